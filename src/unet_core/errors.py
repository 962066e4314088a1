"""Errors the engine raises on bad input.

Every error carries a message written for the person at the keyboard: what was
wrong and what to do about it.  The CLI and the plugin show ``str(err)`` as is.
"""


class UNetError(Exception):
    """Base class of all errors with a user-facing message."""


class InputError(UNetError, ValueError):
    """An image or argument the engine cannot work with."""


class ModelFileError(UNetError, OSError):
    """A model file that is missing, corrupt, unsafe or inconsistent."""


class ImageFileError(UNetError, OSError):
    """An image file that is missing, unreadable or corrupt."""
