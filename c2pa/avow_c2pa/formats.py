"""Which image format a file really is, from its first bytes, never from its name.

A wrong extension is common in files people receive; trusting it would send bytes to the wrong
parser and turn a clear "not an image" into a native-library error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UnreadableFileError

# What ``avow verify`` reads (c2pa-python reads C2PA in each but XCF; a DNG sniffs as TIFF). Signing
# writes only the formats below.
READABLE = "JPEG, PNG, WebP, TIFF/DNG, AVIF, HEIC/HEIF, GIF, SVG, JPEG XL or XCF"
HEAD = 512  # bytes sniffed: enough for an ISO-BMFF brand list and an SVG's prologue

# Formats Avow signs: C2PA can carry a manifest in each (XCF cannot: GIMP keeps provenance in parasites).
MIME_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "gif": "image/gif",
}
# Formats Avow writes (upscale outputs, editor exports) by extension: one table for the core, the CLI
# and, through the worker's `describe`, the editor hooks (tests/test_constants.py checks their copies).
OUTPUT_SUFFIXES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}
SUFFIXES = {**OUTPUT_SUFFIXES, ".avif": "avif", ".gif": "gif"}
# Names `avow verify --recursive` walks: every format above plus the ones read but never signed.
READABLE_SUFFIXES = frozenset({*SUFFIXES, ".dng", ".heic", ".heif", ".svg", ".jxl", ".xcf"})
# Image formats that cannot carry Content Credentials, named so the user hears what the file is.
NO_C2PA = {"bmp": "BMP", "psd": "Photoshop PSD", "jp2": "JPEG 2000", "ico": "ICO", "qoi": "QOI"}


def sniff_format(path: Path) -> str:
    try:
        # Non-blocking, and checked before reading: opening a FIFO or a device must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except IsADirectoryError:
        raise UnreadableFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: {exc.strerror or exc}") from exc
    with open(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UnreadableFileError(f"{path}: is a directory")
        if not stat.S_ISREG(mode):
            raise UnreadableFileError(f"{path}: not a regular file (a FIFO, socket or device); not read")
        try:
            head = handle.read(HEAD)
        except OSError as exc:
            raise UnreadableFileError(f"{path}: {exc.strerror or exc}") from exc
    if not head:
        raise UnreadableFileError(f"{path}: empty file (0 bytes)")
    fmt = _format_of(head)
    if fmt in NO_C2PA:
        raise UnreadableFileError(
            f"{path}: a {NO_C2PA[fmt]} image: C2PA defines no way to embed Content Credentials in it, so Avow "
            f"checks nothing here ({READABLE} expected)"
        )
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
    if head[4:8] == b"ftyp":
        return _bmff_brand(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"gimp xcf "):
        return "xcf"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "jxl"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<") and b"<svg" in text:
        return "svg"
    return _no_c2pa_format(head)


def _bmff_brand(head: bytes) -> str | None:
    """AVIF, HEIC or generic HEIF, by the major brand and then the compatible brands."""
    size = int.from_bytes(head[:4], "big")
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)]
    for brand in brands:
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"):
            return "heic"
    return "heif" if any(brand in (b"mif1", b"msf1", b"mif2") for brand in brands) else None


def _no_c2pa_format(head: bytes) -> str | None:
    if head.startswith(b"BM") and len(head) > 14 and int.from_bytes(head[14:18], "little") in (12, 40, 56, 108, 124):
        return "bmp"
    if head.startswith(b"8BPS"):
        return "psd"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "jp2"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if head.startswith(b"qoif"):
        return "qoi"
    return None
