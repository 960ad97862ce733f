"""`adaptwise export`: ship one method of a run (see bundle.py)."""
