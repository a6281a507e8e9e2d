"""A corpus of hostile and broken files, made from a genuinely signed output (nothing downloaded).

Used by tests/test_hostile_files.py and bench/hostile_corpus.py (which prints the verdict table).
Each case maps to the verdicts it may honestly get: the point is that every file gets one, as a
clear report, with no traceback, hang or crash.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from avow_c2pa.disclosure import Disclosure
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import sign_file, upscale_manifest
from avow_c2pa.metadata import write_disclosure

HOSTILE_TITLE = "\x1b[2J\x1b]0;pwned\x07evil\u202etxt.exe\nsecond line " + "A" * 100_000


def signed(folder: Path, ext: str, title: str = "signed", name: str | None = None, picture: np.ndarray | None = None) -> Path:
    """A signed upscale output, of ``picture`` (8-bit RGB) or of 64 x 80 random pixels."""
    rng = np.random.default_rng(7)
    pixels = folder / f".pixels.{ext}"
    Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8) if picture is None else picture).save(pixels)
    parent = folder / ".parent.png"
    Image.fromarray((rng.random((32, 40, 3)) * 255).astype(np.uint8)).save(parent)
    disclosure = Disclosure(title[:200], "ab" * 32, "SRVGGNetCompact", 2, 40, 32, "cd" * 32)
    write_disclosure(pixels, disclosure)
    out = folder / (name or f"signed.{ext}")
    sign_file(pixels, out, upscale_manifest(disclosure, title), signing_identity(), parent)
    pixels.unlink()
    parent.unlink()
    return out


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos : pos + 12 + length]))
        pos += 12 + length
    return chunks


def _png(chunks: list[bytes]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def corpus(folder: Path) -> dict[str, tuple[Path, set[str]]]:
    """name -> (file, acceptable verdicts)."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = signed(folder, "jpg").read_bytes()
    png = signed(folder, "png").read_bytes()
    app11 = jpeg.index(b"\xff\xeb")
    scan = jpeg.rindex(b"\xff\xda")
    chunks = _png_chunks(png)
    cabx = next(raw for kind, raw in chunks if kind == b"caBX")
    others = [raw for kind, raw in chunks if kind != b"caBX"]
    claim = jpeg.index(b"c2pa.claim")
    cbor = jpeg.index(b"cbor", claim)

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    def patched(data: bytes, offset: int, new: bytes) -> bytes:
        return data[:offset] + new + data[offset + len(new) :]

    huge_cabx = struct.pack(">I", 0x7FFFFFF0) + cabx[4:]
    bad_crc = cabx[:-4] + bytes(b ^ 0xFF for b in cabx[-4:])
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w") as archive:
        archive.writestr("payload.txt", "polyglot")
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    huge_png = _png([
        struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)),
        struct.pack(">I", 10) + b"IDAT" + zlib.compress(b"\0")[:10] + b"\0\0\0\0",
        b"\0\0\0\0IEND\xaeB`\x82",
    ])
    any_verdict = {"no-provenance", "tampered", "unreadable"}
    # c2pa-rs rebuilds the store from the APP11 segment lengths; the outer box length is covered
    # neither by the signature nor by the data hash, so "still valid" is an honest answer there.
    lenient = any_verdict | {"ai-synthesized"}
    return {
        "zero-byte": (write("zero.jpg", b""), {"unreadable"}),
        "random bytes": (write("random.jpg", os.urandom(4096)), {"unreadable"}),
        "wrong extension (signed PNG named .jpg)": (write("png-named.jpg", png), {"ai-synthesized"}),
        "JPEG truncated after SOI": (write("trunc-soi.jpg", jpeg[:2]), {"unreadable", "no-provenance"}),
        "JPEG truncated inside APP11 (C2PA)": (write("trunc-app11.jpg", jpeg[: app11 + 200]), any_verdict),
        "JPEG truncated inside the scan": (write("trunc-scan.jpg", jpeg[: scan + 40]), {"tampered"}),
        "JUMBF box length beyond the file": (write("jumbf-long.jpg", patched(jpeg, app11 + 12, b"\xff\xff\xff\x00")), lenient),
        "JUMBF box length underflowing": (write("jumbf-short.jpg", patched(jpeg, app11 + 12, b"\x00\x00\x00\x03")), lenient),
        "invalid CBOR in the claim": (
            write("bad-cbor.jpg", patched(jpeg, cbor + 4, b"\xff" * 24)), {"tampered", "no-provenance"}
        ),
        "PNG caBX with a huge length": (write("cabx-huge.png", _png([others[0], huge_cabx, *others[1:]])), any_verdict),
        "PNG caBX with a bad CRC": (write("cabx-crc.png", _png([others[0], bad_crc, *others[1:]])), lenient),
        "PNG caBX before IHDR": (write("cabx-first.png", _png([cabx, *others])), lenient),
        "two manifest stores": (write("two-stores.png", _png([others[0], cabx, cabx, *others[1:]])), lenient),
        "huge declared dimensions, tiny payload": (write("huge.png", huge_png), {"no-provenance", "unreadable"}),
        "polyglot: ZIP after EOI": (write("polyglot.jpg", jpeg + zip_buffer.getvalue()), {"tampered", "ai-synthesized"}),
        "terminal escapes, 100k title, newlines": (signed(folder, "jpg", HOSTILE_TITLE, "hostile-title.jpg"), {"ai-synthesized"}),
        "a FIFO where a file should be": (_fifo(folder / "fifo.jpg"), {"unreadable"}),
    }


def _fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path
