"""The pixel watermark as part of Avow's provenance: embedded by every upscale, declared in the
signed manifest (Avow's ``dev.avow.watermark`` assertion), and read by ``avow verify`` when the metadata is gone or lies.

Real model, real c2pa-python and pyexiv2 throughout; the attacks are real re-encodes with Pillow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image

from avow.engine import UpscaleOptions, upscale_file
from avow_c2pa import watermark
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import sign_file, upscale_manifest
from avow_c2pa.metadata import read_metadata
from avow_c2pa.verify import (
    AI_SYNTHESIZED,
    AI_WATERMARKED,
    CONTRADICTION,
    NO_PROVENANCE,
    reader_settings,
    trust_anchors,
    verify_file,
)
from damage import resigned_as_camera_original

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "samples" / "chelsea.jpg"


def cat(mode: str = "RGB") -> Image.Image:
    """A 240x180 crop of the sample photograph: a real picture, small enough to upscale quickly."""
    return Image.open(SAMPLE).convert(mode).crop((100, 40, 340, 220))


def upscale_cat(folder: Path, home: Path, *names: str) -> tuple[Path, list]:
    """Real x2 upscales of ``cat()`` under each of ``names``, as ``avow upscale`` writes them."""
    source = folder / "cat.png"
    cat().save(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AVOW_CONFIG_DIR", str(home))
        return source, [upscale_file(source, folder / name, UpscaleOptions(scale=2, device="cpu")) for name in names]


@pytest.fixture(scope="module")
def upscaled(tmp_path_factory, shared_home):
    """A real x2 upscale of ``cat()``, as ``avow upscale`` writes it."""
    source, (result,) = upscale_cat(tmp_path_factory.mktemp("marked"), shared_home, "cat-x2.png")
    return source, result


def laundered(path: Path, out: Path, size: tuple[int, int] | None = None) -> Path:
    """The cheapest laundering: shrink (back to the input's size, or by half) and save as JPEG q75."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        size = size or (image.width // 2, image.height // 2)
        image.resize(size, Image.Resampling.BICUBIC).save(out, quality=75)
    return out


def test_the_manifest_declares_the_mark_and_xmp_repeats_it(upscaled):
    _, result = upscaled
    identifier = result.disclosure.watermark_id
    assert identifier is not None and len(identifier) == 8
    with c2pa.Context.from_dict(reader_settings(trust_anchors())) as context, c2pa.Reader(
        str(result.output), context=context
    ) as reader:
        store = json.loads(reader.json())
    assertions = store["manifests"][store["active_manifest"]]["assertions"]
    actions = next(a for a in assertions if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    watermarked = next(a for a in actions if a["action"] == "c2pa.watermarked.unbound")
    assert watermarked["parameters"] == {"dev.avow.alg": watermark.WATERMARK_ALG, "dev.avow.identifier": identifier}
    assert not [a for a in assertions if a["label"].startswith("c2pa.soft-binding")]  # not a registered algorithm
    carried = next(a for a in assertions if a["label"] == "dev.avow.watermark")["data"]
    assert carried["identifiers"] == [identifier] and carried["alg"] == "dev.avow.watermark.1"
    assert read_metadata(result.output)[1]["Xmp.avow.watermark"] == identifier

    report = verify_file(result.output, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.validation_state == "Trusted"
    assert report.soft_bindings == [identifier]
    assert report.watermark["found"] and report.watermark["identifier"] == identifier
    assert report.watermark["matches_manifest"] is True and report.watermark["false_positive_probability"] < 1e-12


def test_marked_output_is_found_after_jpeg_q75_and_half_size_an_unmarked_one_is_not(upscaled, tmp_path):
    source, result = upscaled
    stripped = verify_file(laundered(result.output, tmp_path / "stripped.jpg"), trust_anchors())
    assert stripped.verdict == AI_WATERMARKED and stripped.exit_code == 0 and not stripped.manifest_present
    assert stripped.summary.startswith("AI-upscaled by Avow (metadata removed)")
    assert stripped.watermark["identifier"] == result.disclosure.watermark_id

    back = verify_file(laundered(result.output, tmp_path / "back.jpg", size=Image.open(source).size), trust_anchors())
    assert back.verdict == AI_WATERMARKED

    plain = tmp_path / "bicubic-x2.png"
    with Image.open(source) as image:
        image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC).save(plain)
    for path in (plain, laundered(plain, tmp_path / "bicubic-stripped.jpg"), SAMPLE):
        report = verify_file(path, trust_anchors())
        assert report.verdict == NO_PROVENANCE and report.watermark["found"] is False, path.name
        assert report.watermark["false_positive_probability"] > 1e-6


def test_stripped_and_resigned_as_a_camera_original_is_a_contradiction(upscaled, tmp_path):
    _, result = upscaled
    stripped = laundered(result.output, tmp_path / "stripped.jpg")
    forged, forger_root = resigned_as_camera_original(stripped, tmp_path / "camera.jpg", tmp_path / "forger")
    report = verify_file(forged, trust_anchors([forger_root]))
    assert report.validation_state == "Trusted" and not report.ai_declared  # the signature itself is fine
    assert report.verdict == CONTRADICTION and report.exit_code == 1
    assert report.summary.startswith("Contradiction: the pixels carry Avow's synthesis mark")


def test_a_manifest_naming_another_identifier_is_called_out(upscaled, tmp_path):
    source, result = upscaled
    other = result.disclosure.__class__(**{**result.disclosure.to_dict(), "watermark_id": "0badf00d"})
    out = tmp_path / "transplanted.png"
    sign_file(result.output, out, upscale_manifest(other, out.name), signing_identity(), parent=source)
    report = verify_file(out, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.soft_bindings == ["0badf00d"]
    assert report.watermark["matches_manifest"] is False
    assert f"identifier {result.disclosure.watermark_id} does not match the one the manifest declares" in report.summary


def test_a_users_own_key_marks_too_and_the_public_mark_stays(tmp_path, monkeypatch, shared_home):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[watermark]\nkeys = ["studio-secret-1"]\n')
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(home))
    source = tmp_path / "cat.png"
    cat().save(source)
    result = upscale_file(source, tmp_path / "cat-x2.png", UpscaleOptions(scale=2, device="cpu"))
    # Two marks share one amplitude budget, so each is weaker: checked after JPEG q75 at full size.
    with Image.open(result.output) as image:
        image.save(tmp_path / "stripped.jpg", quality=75)
    pixels = np.asarray(Image.open(tmp_path / "stripped.jpg"))
    payload = int(result.disclosure.watermark_id, 16)
    for key in (watermark.DEFAULT_KEY, "studio-secret-1"):
        found = watermark.detect(pixels, key)
        assert found.found and found.payload == payload, key
    assert not watermark.detect(pixels, "somebody-else").found
    assert verify_file(tmp_path / "stripped.jpg", trust_anchors()).watermark["key"] == "public"


def test_the_editors_path_marks_the_layer_and_the_signed_export_declares_it(tmp_path, shared_home):
    """What GIMP and Krita do through the worker: upscale pixels, export them, sign the export."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin" / "client"))
    import avow_client

    layer = np.asarray(cat("RGBA"), dtype=np.float32) / 255
    source = tmp_path / "layer.npy"
    avow_client.write_npy(source, 240, 180, 4, layer.astype("<f4").tobytes())
    with avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(shared_home)}) as worker:
        result = worker.request("upscale", input=str(source), output=str(tmp_path / "up.npy"), scale=2, device="cpu")
        identifier = result["provenance"]["watermark_id"]
        upscaled = np.load(result["output"])
        exported = tmp_path / "export.jpg"
        Image.fromarray((np.clip(upscaled[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)).save(exported, quality=90)
        worker.request("sign", file=str(exported), provenance=[result["provenance"]], editor="GIMP 3.0.4")
        report = worker.request("verify", file=str(exported))
    assert report["verdict"] == AI_SYNTHESIZED and report["soft_bindings"] == [identifier]
    assert report["watermark"]["found"] and report["watermark"]["identifier"] == identifier
    assert report["watermark"]["matches_manifest"] is True
