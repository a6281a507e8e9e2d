"""``avow verify`` looks at the pixels of every file a viewer can show: a 2-byte edit or one odd
chunk that makes Pillow's strict decode fail must not hide an upscale. Real model, real
c2pa-python and pyexiv2; the damage is done to the bytes of real outputs."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from avow_c2pa import pixels
from avow_c2pa.verify import (
    AI_WATERMARKED,
    CONTRADICTION,
    NO_PROVENANCE,
    trust_anchors,
    verify_file,
)
from damage import (
    jpeg_stripped_without_eoi,
    png_stripped_with_ztxt,
    resigned_as_camera_original,
)
from test_watermark_binding import upscale_cat


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, shared_home):
    """Real x2 upscales of ``cat()`` as JPEG and PNG, as ``avow upscale`` writes them."""
    _, (jpeg, png) = upscale_cat(tmp_path_factory.mktemp("outputs"), shared_home, "cat-x2.jpg", "cat-x2.png")
    return jpeg, png


def strict_decode_fails(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError):
        return True
    return False


def test_a_stripped_jpeg_without_its_eoi_is_ai_watermarked_and_resigned_a_contradiction(outputs, tmp_path):
    jpeg, _ = outputs
    damaged = jpeg_stripped_without_eoi(jpeg.output, tmp_path / "stripped.jpg")
    assert strict_decode_fails(damaged)
    report = verify_file(damaged, trust_anchors())
    assert report.verdict == AI_WATERMARKED and not report.manifest_present, report.summary
    assert report.watermark["checked"] and report.watermark["lenient_decode"]
    assert report.watermark["identifier"] == jpeg.disclosure.watermark_id
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the lenient decode leaves Pillow as it found it

    # That file re-signed as a camera original, with credentials the verifier trusts.
    forged, forger_root = resigned_as_camera_original(damaged, tmp_path / "camera.jpg", tmp_path / "forger")
    lie = verify_file(forged, trust_anchors([forger_root]))
    assert lie.validation_state == "Trusted" and not lie.ai_declared and lie.watermark["lenient_decode"]
    assert lie.verdict == CONTRADICTION and lie.exit_code == 1, lie.summary


def test_a_stripped_png_with_a_2mb_ztxt_chunk_is_still_ai_watermarked(outputs, tmp_path):
    _, png = outputs
    damaged = png_stripped_with_ztxt(png.output, tmp_path / "ztxt.png")
    assert damaged.stat().st_size > 2 << 20 and strict_decode_fails(damaged)
    report = verify_file(damaged, trust_anchors())
    assert report.verdict == AI_WATERMARKED, report.summary
    assert report.watermark["lenient_decode"] and report.watermark["identifier"] == png.disclosure.watermark_id


@pytest.mark.parametrize("cut", ["idat", "header"])
def test_when_the_pixels_cannot_be_searched_the_report_says_so(tmp_path, cut):
    """A PNG whose pixel data is garbage, or cut after its signature: no decode gives pixels, and
    nothing may read as searched."""
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(good)
    data = bytearray(good.read_bytes())
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    data[start : start + length] = b"\x00" * length  # not a zlib stream
    broken = tmp_path / "broken.png"
    broken.write_bytes(bytes(data) if cut == "idat" else bytes(data[:20]))
    report = verify_file(broken, trust_anchors())
    assert report.verdict == NO_PROVENANCE
    assert report.watermark["checked"] is False and report.watermark["found"] is None and report.watermark["reason"]
    assert "Avow's pixel mark was not looked for" in report.summary
    assert report.to_dict()["watermark"]["checked"] is False
    shown = subprocess.run([sys.executable, "-m", "avow", "verify", str(broken)], capture_output=True, text=True, check=False)
    assert shown.returncode == 2 and "watermark: NOT CHECKED" in shown.stdout and "none found" not in shown.stdout


def test_an_oversized_picture_is_not_decoded(tmp_path):
    """The pixel budget holds for the lenient decode too: the IHDR is read, the IDAT never."""
    huge = tmp_path / "huge.png"
    header = struct.pack(">IIBBBBB", 9_000, 9_000, 8, 2, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    result = pixels.search_file(huge)
    assert result["checked"] is False and "above the 64 MP" in result["reason"]
