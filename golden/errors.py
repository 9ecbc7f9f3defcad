"""Errors that a user's input can cause.

The CLI turns these into one line on stderr and exit status 2; anything else is a bug and
keeps its traceback.
"""

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user: an unknown model, a malformed file, an unsupported layer, ..."""
