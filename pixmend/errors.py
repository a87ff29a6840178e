"""Errors that reach the user as one line, never as a traceback."""


class PixmendError(Exception):
    """A problem the user can act on (bad file, bad option). The CLI prints str(err) on one line."""


class UsageError(PixmendError):
    """Wrong command-line usage: exit status 2."""
