"""Typed errors of the engine; each carries a message fit to show a user as it is, and the exit
code of its outcome (the table is in ``avow_c2pa.errors``)."""

from avow_c2pa.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_USAGE


class AvowError(Exception):
    """Base of every error Avow raises on purpose."""

    exit_code = EXIT_FAILED


class UsageError(AvowError):
    """The request itself is wrong: bad paths, options that contradict each other."""

    exit_code = EXIT_USAGE


class ImageError(AvowError):
    """The input picture cannot be read, or the result cannot be stored as asked."""

    exit_code = EXIT_USAGE


class DeviceError(AvowError):
    """The compute device ran out of memory at every tile size."""


class DeviceUnavailable(UsageError):
    """The requested compute device does not exist on this machine: the request is wrong, not the work."""


class Cancelled(AvowError):
    """The user stopped the job; nothing was written."""

    exit_code = EXIT_CANCELLED
