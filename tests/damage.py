"""Byte-level edits of real outputs, as an attacker or a sloppy tool makes them: metadata stripped
without re-encoding, a JPEG's final EOI dropped, an oversized ancillary PNG chunk added; and a
stripped copy re-signed as a camera original."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import sign_file

CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")


def jpeg_stripped_without_eoi(path: Path, out: Path) -> Path:
    """Every APPn (EXIF, XMP, the C2PA JUMBF) and COM segment removed, the scan copied byte for
    byte, then the final EOI marker dropped: no re-encode, the pixels are untouched."""
    data = path.read_bytes()
    kept, pos = [data[:2]], 2
    while True:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            kept.append(data[pos:])
            break
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE) or marker == 0xE0:  # keep JFIF APP0
            kept.append(data[pos : pos + 2 + length])
        pos += 2 + length
    stripped = b"".join(kept)
    assert stripped.endswith(b"\xff\xd9")
    out.write_bytes(stripped[:-2])
    return out


def png_stripped_with_ztxt(path: Path, out: Path, size: int = 5 << 19) -> Path:
    """Only the pixel chunks kept, then a zTXt chunk (``size`` bytes of text, over 2 MB compressed)
    added right after IHDR: it decompresses past Pillow's MAX_TEXT_CHUNK, so the strict decode
    refuses the file."""
    data, pos, chunks = path.read_bytes(), 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in PNG_PIXEL_CHUNKS:
            chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    text = np.random.default_rng(0).integers(32, 127, size, dtype=np.uint8).tobytes()
    body = b"Comment\x00\x00" + zlib.compress(text, 9)
    ztxt = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    out.write_bytes(PNG_SIGNATURE + chunks[0] + ztxt + b"".join(chunks[1:]))
    return out


def resigned_as_camera_original(stripped: Path, out: Path, forger_home: Path) -> tuple[Path, Path]:
    """``stripped`` signed as a camera capture (``c2pa.created``, digitalCapture) by someone else's
    identity (created in ``forger_home``), and that identity's root to trust: valid, even trusted,
    credentials telling a lie the pixels contradict."""
    manifest = {
        "claim_generator_info": [{"name": "Camera", "version": "1"}],
        "title": out.name,
        "assertions": [
            {"label": "c2pa.actions.v2", "created": True,
             "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": CAPTURE}]}}
        ],
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AVOW_CONFIG_DIR", str(forger_home))
        sign_file(stripped, out, manifest, signing_identity(), parent=None)
    return out, forger_home / "identity" / "root.pem"
