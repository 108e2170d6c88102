"""Exceptions the CLI turns into one line on stderr and exit code 1 (no torch here)."""


class VqzipError(Exception):
    """Base of every error a user can cause (bad file, missing model, unwritable path)."""


class FormatError(VqzipError):
    """The bytes are not a valid .vqz file of a version we read."""


class LimitError(VqzipError):
    """The input may be valid, but it is larger than this reader accepts (e.g. --max-pixels)."""


class ModelNotFound(VqzipError):
    """The model a file names (or a user asked for) is not installed."""


class VqzipWarning(UserWarning):
    """Lossy conversions of the input (palette, 16-bit, CMYK) that the user should hear about."""
