"""Which image format a file really is, from its first bytes, never from its name.

A wrong extension is common in files people receive; trusting it would send bytes to the wrong
parser and turn a clear "not an image" into a native-library error.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UnreadableFileError

READABLE = "JPEG, PNG, WebP, TIFF, AVIF, GIF or XCF"

# Formats C2PA can carry a manifest in (XCF cannot: GIMP keeps provenance in parasites).
MIME_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "gif": "image/gif",
}
SUFFIXES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff",
            ".avif": "avif", ".gif": "gif"}


def sniff_format(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except IsADirectoryError:
        raise UnreadableFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: {exc.strerror or exc}") from exc
    if not head:
        raise UnreadableFileError(f"{path}: empty file (0 bytes)")
    fmt = _format_of(head)
    if fmt is None:
        raise UnreadableFileError(f"{path}: not an image ({READABLE} expected)")
    return fmt


def _format_of(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"mif1", b"msf1"):
        return "avif"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"gimp xcf "):
        return "xcf"
    return None
