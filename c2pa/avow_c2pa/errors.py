"""Typed errors of the provenance layer, so callers (CLI, worker, editor hooks) can tell a user
what went wrong without showing a traceback."""


class ProvenanceError(Exception):
    """Base of every error this package raises on purpose."""


class IdentityError(ProvenanceError):
    """The signing identity is missing, unreadable, or not usable for C2PA."""


class DisclosureError(ProvenanceError):
    """EXIF/XMP disclosure could not be written: the output must then not exist."""


class SigningError(ProvenanceError):
    """The C2PA manifest could not be built or signed: the output must then not exist."""


class UnreadableFileError(ProvenanceError):
    """A file to verify cannot be read at all (missing, empty, not an image)."""


class RecordError(ProvenanceError):
    """An editor's Avow records cannot be read or are not Avow's: an export is then not signed,
    since signing it without them could take a disclosure away."""
