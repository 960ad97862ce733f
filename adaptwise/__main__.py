import sys

from adaptwise.cli import main

sys.exit(main())
