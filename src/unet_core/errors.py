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


def is_out_of_memory(err: BaseException) -> bool:
    """Memory ran out: the machine's (MemoryError) or a GPU's (torch's OutOfMemoryError)."""
    return isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"


def explain(err: BaseException) -> str:
    """What went wrong, for the person at the keyboard: the message of our own errors;
    for the machine's (memory, disk) what it was and what helps; else the error's kind
    and message.  The one wording of these, for the command line and the plugin."""
    if isinstance(err, UNetError):
        return str(err)
    if isinstance(err, MemoryError):
        need = f" ({err})" if str(err) else ""
        return (f"not enough memory{need}. Close other programs; an image too large for memory "
                "is segmented block by block when it is a 2-D (H, W) or (H, W, C) TIFF or zarr, "
                "so save a stack's planes as such; in training, a smaller crop or batch size")
    if is_out_of_memory(err):
        return ("not enough GPU memory. Use a smaller tile (custom tiling) or batch size, or the "
                "cpu device")
    if isinstance(err, OSError):
        return (f"{err.strerror or err} ({type(err).__name__}"
                + (f" on {err.filename}" if getattr(err, "filename", None) else "") + "); "
                "check the disk (free space, permissions) and run again")
    return f"{type(err).__name__}: {err}"
