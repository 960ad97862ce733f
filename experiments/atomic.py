"""Write files so that a crash or Ctrl-C never leaves a half-written one behind.

Temporary files and folders are created private (0600 / 0700) by `tempfile`; before they are
renamed into place they get the modes a plain `open` or `mkdir` would give under the user's umask.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK


def set_default_modes(path: Path) -> None:
    """Give `path` (a file, or a folder and everything in it) the modes of the user's umask."""
    path = Path(path)
    if path.is_dir():
        os.chmod(path, DIR_MODE)
        for folder, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(folder, name), DIR_MODE)
            for name in files:
                os.chmod(os.path.join(folder, name), FILE_MODE)
    else:
        os.chmod(path, FILE_MODE)


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_in(build: Path, out: Path) -> None:
    """Put the finished folder `build` (made next to `out`) in the place of `out`: the old
    folder, if any, is moved aside first and deleted after, so `out` is always whole."""
    build, out = Path(build), Path(out)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(build, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(build, out)
