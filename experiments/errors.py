"""Errors the user can fix: the CLI prints them as one line and exits with status 2."""


class AdaptwiseError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


class TaskError(AdaptwiseError):
    """A bad task file or data file."""


class SetupError(AdaptwiseError):
    """Something missing from the installation."""
