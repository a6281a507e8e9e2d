"""Typed errors of the provenance layer, each carrying the exit code of its outcome, so callers
(CLI, worker, editor hooks) tell a user what went wrong without a traceback, and a script can
tell outcomes apart by code alone.

The exit codes are defined here, once, because this package is the one every other imports
(it never imports torch). ``avow verify`` uses 0-3 and 8-10 for its verdicts (see ``verdicts.EXIT_CODES``);
every command shares the rest. The README's exit-code table is this list.
"""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 3  # bad arguments, unreadable/unsupported input, refused model, output exists
EXIT_FAILED = 4  # the work itself failed (inference, out of memory, a bug)
EXIT_SETTINGS = 5  # config.toml is malformed
EXIT_IDENTITY = 6  # the signing identity is missing, damaged or not valid for signing
EXIT_FILESYSTEM = 7  # the operating system refused a read or write: disk full, permission, read-only
EXIT_CANCELLED = 130  # Ctrl-C, SIGTERM or a cancel request; nothing was written


class ProvenanceError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EXIT_FAILED


class SettingsError(ProvenanceError):
    """``config.toml`` is unreadable or does not fit the schema; the message names the key and file."""

    exit_code = EXIT_SETTINGS


class IdentityError(ProvenanceError):
    """The signing identity is missing, unreadable, or not usable for C2PA."""

    exit_code = EXIT_IDENTITY


class TrustAnchorError(ProvenanceError):
    """A ``--trust`` file is missing or holds no PEM certificate: the command line is wrong."""

    exit_code = EXIT_USAGE


class DisclosureError(ProvenanceError):
    """EXIF/XMP disclosure could not be written: the output must then not exist."""


class SigningError(ProvenanceError):
    """The C2PA manifest could not be built or signed: the output must then not exist."""


class UnreadableFileError(ProvenanceError):
    """A file to verify cannot be read at all (missing, empty, not an image)."""

    exit_code = EXIT_USAGE


class FileSystemError(ProvenanceError):
    """The operating system refused to read or write a file; the message names the path."""

    exit_code = EXIT_FILESYSTEM


_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOENT: "no such file or directory",
    errno.EFBIG: "the file is too large for this file system",
    errno.ENAMETOOLONG: "the file name is too long",
}


def describe_os_error(exc: OSError, path: Path | str | None = None) -> str:
    """One line for an ``OSError``: the path first (the given one, else the one the OS named), then
    what happened in plain words; never Python's repr of the exception."""
    where = path if path is not None else exc.filename
    what = _HINTS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {what}" if where is not None else what


def file_system_error(exc: OSError, path: Path | str | None = None) -> FileSystemError:
    return FileSystemError(describe_os_error(exc, path))


def discard(*paths: Path) -> None:
    """Remove temp files on the way out of a failure. Its own errors are swallowed: the failure
    being reported is the real one (a read-only folder must not turn a write error into a
    confusing unlink error), and a file that cannot be removed carries a non-image name."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass

class RecordError(ProvenanceError):
    """An editor's Avow records cannot be read or are not Avow's: an export is then not signed,
    since signing it without them could take a disclosure away."""
