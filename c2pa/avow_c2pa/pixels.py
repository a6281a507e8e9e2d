"""The pixels of a file, decoded for Avow's mark, and the search for it with every key the user has.

The decode is lenient on purpose: a truncated JPEG scan, a dropped EOI marker or an odd or
oversized ancillary PNG chunk (a 2 MB zTXt) makes Pillow's strict decode fail, yet every viewer
still shows the picture. Two bytes must not hide an upscale, so when the strict decode fails the
file is decoded again as a viewer would: truncated data accepted and, for PNG, only the chunks
that carry pixels kept. Used by ``avow verify`` and, before an editor's export is signed, by the
worker: the pixels decide what a manifest declares.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from .config import user_watermark_keys
from .errors import ProvenanceError
from .watermark import DEFAULT_KEY, DETECT_MIN_SIDE, Detection, claimed_reduction, detect, detect_claimed

# Watermark detection decodes the pixels: bounded, so a huge PNG cannot exhaust the verifier
# (JPEG is decoded at a reduced DCT scale, so any JPEG qualifies).
WATERMARK_MAX_PIXELS = 64_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a PNG's pixels need: everything else (text, ICC, EXIF, private chunks) is left unread.
_PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT")
# Pillow reads ImageFile.LOAD_TRUNCATED_IMAGES at decode time only: it is set for the lenient
# decode alone, under a lock, and restored, so no other decode in the process becomes lenient.
_LENIENT = threading.Lock()


class PixelsUnreadableError(ProvenanceError):
    """Neither a strict nor a lenient decode gives pixels: the mark could not be looked for."""


def search_file(path: Path, scale: int | None = None) -> dict:
    """Avow's mark in a file's pixels, as ``avow verify --json`` reports it under ``watermark``.
    ``scale``: the upscale factor the file's records claim. Its period is tried first, on a JPEG
    decoded as small as that period allows; unless a payload is read there, the full search runs
    on the usual decode, as if nothing had been claimed.

    ``checked`` is False (with ``reason``, ``found`` None) when the search could not run at all:
    an undecodable file must never read as "searched, no mark". The user's [watermark] settings
    are read first, so a malformed setting raises rather than passing for an unmarked file.
    """
    keys = _keys()
    try:
        pixels, full_size, lenient = decode(path, scale)
        mark = None if scale is None else _claimed_mark(pixels, full_size, keys, scale)
        if mark is None:
            if max(pixels.shape[:2]) < min(max(full_size), DETECT_MIN_SIDE):
                pixels, full_size, lenient = decode(path)  # the claim's smaller decode cannot serve the full search
            mark = find_mark(pixels, full_size, keys)
    except PixelsUnreadableError as exc:
        return unchecked(str(exc))
    except (MemoryError, ValueError, TypeError, FloatingPointError) as exc:  # odd shapes or sizes numpy refuses
        return unchecked(f"the search failed: {_why(exc)}")
    mark["lenient_decode"] = lenient
    return mark


def unchecked(reason: str) -> dict:
    return {
        "checked": False, "reason": reason, "found": None, "score": None, "false_positive_probability": None,
        "identifier": None, "key": None, "matches_manifest": None, "layer": None, "lenient_decode": None,
    }


def _keys() -> list[tuple[str, str]]:
    return [("public", DEFAULT_KEY), *(("user", key) for key in user_watermark_keys())]


def find_mark(pixels: np.ndarray, full_size: tuple[int, int] | None, keys: list[tuple[str, str]] | None = None) -> dict:
    """The public key first, then the user's own: the first that finds its mark, else the public one's result."""
    public = None
    for name, key in keys or _keys():
        mark = _mark(detect(pixels, key, full_size=full_size), name)
        if mark["found"]:
            return mark
        public = public or mark
    assert public is not None  # the public key is always searched
    return public


def _claimed_mark(pixels: np.ndarray, full_size: tuple[int, int], keys: list[tuple[str, str]], scale: int) -> dict | None:
    for name, key in keys:
        found = detect_claimed(pixels, key, scale=scale, full_size=full_size)
        if found is not None:
            return _mark(found, name)
    return None


def _mark(found: Detection, key_name: str) -> dict:
    return {
        "checked": True,
        "found": found.found,
        "score": round(found.score, 2),
        "false_positive_probability": found.false_positive_probability,
        "identifier": None if found.payload is None else f"{found.payload:08x}",
        "key": key_name,
        "matches_manifest": None,
        "layer": None,
        "lenient_decode": False,
    }


class _TooLarge(ValueError):
    """Above the pixel budget: no second, lenient attempt."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}x{height} is above the {WATERMARK_MAX_PIXELS // 1_000_000} MP searched for the mark")


def decode(path: Path, scale: int | None = None) -> tuple[np.ndarray, tuple[int, int], bool]:
    """The pixels to search, the picture's full (width, height) (a JPEG is decoded at reduced
    scale, smaller still for the period of a claimed ``scale``) and whether only the lenient
    decode succeeded."""
    try:
        pixels, full_size = _decode(path, lenient=False, scale=scale)
        return pixels, full_size, False
    except _TooLarge as exc:
        raise PixelsUnreadableError(str(exc)) from None
    except Exception as strict:  # noqa: BLE001 - Pillow's decoders raise a zoo on damaged data
        try:
            pixels, full_size = _decode(path, lenient=True, scale=scale)
        except _TooLarge as exc:
            raise PixelsUnreadableError(str(exc)) from None
        except Exception as exc:
            raise PixelsUnreadableError(f"cannot decode the pixels: {_why(exc)} (strict decode: {_why(strict)})") from exc
        if pixels.size == 0 or pixels.min() == pixels.max():
            # What a lenient decoder fills in where no data decoded: searching it would read as "no mark".
            raise PixelsUnreadableError(f"no picture content decodes ({_why(strict)})") from None
        return pixels, full_size, True


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _decode(path: Path, lenient: bool, scale: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    with _truncated_ok() if lenient else nullcontext(), _opened(path, lenient) as image:
        full_size = image.size
        if image.format == "JPEG":
            # Decode at 1/2..1/8 scale, no smaller than the detector can use: the mark lives well below.
            longest = max(image.size)
            size = (-(-image.width * DETECT_MIN_SIDE // longest), -(-image.height * DETECT_MIN_SIDE // longest))
            if scale is not None:  # a claimed scale's period allows smaller still
                reduction = claimed_reduction(image.size, scale)
                size = (min(size[0], -(-image.width // reduction)), min(size[1], -(-image.height // reduction)))
            # Luma only: the mark is the same on R, G and B, and the luma detection uses (BT.601) is
            # the Y a colour JPEG stores, so libjpeg skips the chroma's transforms and conversion.
            image.draft("L", size)
        width, height = image.size
        if width * height > WATERMARK_MAX_PIXELS and image.format != "JPEG":
            raise _TooLarge(width, height)
        if image.mode.startswith(("I", "F")):  # 16-bit or float grey
            pixels = np.asarray(image, dtype=np.float32)
            return pixels / (65535.0 if pixels.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0), full_size
        return np.asarray(image if image.mode == "L" else image.convert("RGB")), full_size


@contextmanager
def _truncated_ok() -> Iterator[None]:
    with _LENIENT:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


@contextmanager
def _opened(path: Path, lenient: bool) -> Iterator[Image.Image]:
    with open(path, "rb") as handle:
        source = _png_pixel_chunks(handle) if lenient and handle.read(8) == _PNG_SIGNATURE else path
        with Image.open(source) as image:
            yield image


def _png_pixel_chunks(handle) -> io.BytesIO:
    """A PNG rebuilt from its pixel chunks only, CRCs recomputed; ancillary chunks are skipped
    unread (a hostile 1 GB zTXt costs a seek), a truncated IDAT is kept as far as it goes."""
    out = io.BytesIO()
    out.write(_PNG_SIGNATURE)
    budget = None
    size = handle.seek(0, io.SEEK_END)
    handle.seek(len(_PNG_SIGNATURE))
    while True:
        start = handle.tell()
        header = handle.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        if kind not in _PNG_PIXEL_CHUNKS:
            if handle.seek(length + 4, io.SEEK_CUR) > size:
                _resync(handle, start + 8, size)  # a length past the end: the next pixel chunk is the truth
            continue
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", handle.read(8))
            handle.seek(-8, io.SEEK_CUR)
            if width * height > WATERMARK_MAX_PIXELS:
                raise _TooLarge(width, height)
            budget = width * height * 8 + height + (1 << 20)  # 16-bit RGBA, filter bytes, slack for zlib
        data = handle.read(min(length, budget if budget is not None else length))
        if budget is not None:
            budget -= len(data)
        _chunk(out, kind, data)
        if len(data) < length:
            break  # truncated (or past any sane size): decode what there is
        handle.seek(4, io.SEEK_CUR)  # the stored CRC: a damaged one must not hide the pixels
    _chunk(out, b"IEND", b"")
    out.seek(0)
    return out


def _resync(handle, offset: int, size: int) -> None:
    """Move to the next IDAT or IEND chunk header after ``offset`` (or to the end)."""
    handle.seek(offset)
    rest = handle.read(size - offset)
    found = [i for i in (rest.find(b"IDAT"), rest.find(b"IEND")) if i >= 4]
    handle.seek(offset + min(found) - 4 if found else size)


def _chunk(out: io.BytesIO, kind: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))
