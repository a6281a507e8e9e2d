"""Typed errors of the engine; each carries a message fit to show a user as it is."""


class AvowError(Exception):
    """Base of every error Avow raises on purpose."""


class UsageError(AvowError):
    """The request itself is wrong: bad paths, options that contradict each other."""


class ImageError(AvowError):
    """The input picture cannot be read, or the result cannot be stored as asked."""


class DeviceError(AvowError):
    """The requested compute device is not available, or ran out of memory at every tile size."""


class Cancelled(AvowError):
    """The user stopped the job; nothing was written."""
