"""Disclosure, signing and verification with the real c2pa-python and pyexiv2 (no model involved)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import c2pa
import numpy as np
import pyexiv2
import pytest
from PIL import Image

from avow_c2pa.disclosure import COMPOSITE_WITH_AI, Disclosure
from avow_c2pa.errors import DisclosureError, IdentityError
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import sign_file, upscale_manifest
from avow_c2pa.metadata import read_metadata, read_rights, write_disclosure
from avow_c2pa.verify import AI_SYNTHESIZED, NO_PROVENANCE, SIGNED, TAMPERED, printable, trust_anchors, verify_file
from conftest import photo

DISCLOSURE = Disclosure("avow-compact-x4", "ab" * 32, "SRVGGNetCompact", 4, 48, 40, "cd" * 32)


def signed_output(tmp_path: Path, ext: str, parent: Path | None = None) -> Path:
    if parent is None:
        parent = tmp_path / "source.png"
        Image.fromarray(photo()).save(parent)
    pixels = tmp_path / f"pixels.{ext}"
    Image.fromarray(photo(160, 192)).save(pixels)
    write_disclosure(pixels, DISCLOSURE)
    out = tmp_path / f"out.{ext}"
    sign_file(pixels, out, upscale_manifest(DISCLOSURE, out.name), signing_identity(), parent)
    return out


def test_first_use_creates_a_private_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path))
    identity = signing_identity()
    key = tmp_path / "identity" / "signer.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert identity.alg == "es256" and set(identity.fingerprints()) == {"leaf", "root"}
    assert signing_identity().fingerprints() == identity.fingerprints()  # reused, not recreated
    assert not list(tmp_path.glob("identity/root.key")), "the root's private key must not be kept"


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tiff"])
def test_signed_output_verifies_trusted_and_declares_ai(tmp_path, jpeg_in, ext):
    out = signed_output(tmp_path, ext, parent=jpeg_in)
    report = verify_file(out, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED, report.summary
    assert report.validation_state == "Trusted" and report.signer_trusted
    assert report.model == {"model": "avow-compact-x4", "sha256": "ab" * 32, "scale": "4"}
    assert report.xmp["digital_source_type"] == COMPOSITE_WITH_AI
    assert report.metadata_agrees is True
    assert report.summary.startswith("AI-upscaled by Avow (model avow-compact-x4, x4): not original footage")
    assert report.exit_code == 0


def test_manifest_layout(tmp_path, jpeg_in):
    out = signed_output(tmp_path, "jpg", parent=jpeg_in)
    with c2pa.Reader(str(out)) as reader:
        active = reader.get_active_manifest()
        detailed = reader.detailed_json()
    actions = next(a for a in active["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited", "c2pa.resized"]
    edited = actions[1]
    assert edited["digitalSourceType"] == COMPOSITE_WITH_AI
    assert edited["softwareAgent"]["name"] == "Avow"
    assert edited["parameters"] == {
        "dev.avow.model": "avow-compact-x4", "dev.avow.modelArch": "SRVGGNetCompact",
        "dev.avow.modelSha256": "ab" * 32, "dev.avow.scale": "4",
    }
    assert all(name.startswith("dev.avow.") for a in actions[1:] for name in a["parameters"])
    assert [i["relationship"] for i in active["ingredients"]] == ["parentOf"]
    assert active["ingredients"][0]["title"] == "input.jpg"
    assert active["thumbnail"]["format"] == "image/jpeg"
    assert '"created_assertions"' in detailed and "c2pa.actions.v2" in detailed.split('"gathered_assertions"')[0]


def test_without_the_root_the_signature_is_valid_but_the_signer_unknown(tmp_path):
    report = verify_file(signed_output(tmp_path, "png"), anchors="")
    assert report.verdict == AI_SYNTHESIZED
    assert report.validation_state == "Valid" and not report.signer_trusted
    assert "signer unknown" in report.summary


def test_a_changed_pixel_is_tampering(tmp_path):
    out = signed_output(tmp_path, "jpg")
    data = bytearray(out.read_bytes())
    data[-200] ^= 0x01  # inside the entropy-coded scan: one pixel block changes
    out.write_bytes(bytes(data))
    report = verify_file(out, trust_anchors())
    assert report.verdict == TAMPERED and report.validation_state == "Invalid"
    assert "assertion.dataHash.mismatch" in report.status_codes
    assert report.summary.startswith("Tampered after signing") and report.exit_code == 1


def test_metadata_written_after_signing_breaks_the_binding(tmp_path):
    out = signed_output(tmp_path, "jpg")
    with pyexiv2.Image(str(out)) as image:
        image.modify_exif({"Exif.Image.Artist": "someone"})
    report = verify_file(out, trust_anchors())
    assert report.verdict == TAMPERED
    assert "assertion.dataHash.mismatch" in report.status_codes


def test_a_reencoded_copy_has_no_provenance_but_keeps_nothing_false(tmp_path):
    out = signed_output(tmp_path, "jpg")
    copy = tmp_path / "reencoded.jpg"
    Image.open(out).save(copy, quality=85)
    report = verify_file(copy, trust_anchors())
    assert report.verdict == NO_PROVENANCE and not report.manifest_present
    assert report.summary == "No provenance: cannot tell." and report.exit_code == 2


def test_a_camera_style_manifest_is_signed_not_synthesized(tmp_path):
    pixels = tmp_path / "plain.png"
    Image.fromarray(photo()).save(pixels)
    out = tmp_path / "signed.png"
    capture = {"action": "c2pa.created", "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}
    manifest = {
        "claim_generator_info": [{"name": "camera", "version": "1"}],
        "title": "signed.png",
        "assertions": [{"label": "c2pa.actions.v2", "created": True, "data": {"actions": [capture]}}],
    }
    sign_file(pixels, out, manifest, signing_identity(), parent=None)
    report = verify_file(out, trust_anchors())
    assert report.verdict == SIGNED and not report.ai_declared
    assert report.summary.startswith("Signed provenance, no AI synthesis declared")


def test_disclosure_fields_and_no_camera_identity(tmp_path):
    out = signed_output(tmp_path, "jpg")
    exif, xmp = read_metadata(out)
    assert xmp["Xmp.iptcExt.DigitalSourceType"] == COMPOSITE_WITH_AI
    assert xmp["Xmp.iptcExt.AISystemUsed"] == "Avow 0.1.0 (avow-compact-x4)"
    assert xmp["Xmp.xmp.CreatorTool"] == "Avow 0.1.0"
    assert "synthesized by the model avow-compact-x4 at x4" in xmp["Xmp.dc.description"]['lang="x-default"']
    assert xmp["Xmp.avow.modelSha256"] == "ab" * 32 and xmp["Xmp.avow.inputSha256"] == "cd" * 32
    assert xmp["Xmp.avow.inputWidth"] == "48" and xmp["Xmp.avow.scale"] == "4"
    assert "synthesized" in exif["Exif.Image.ImageDescription"] and "synthesized" in exif["Exif.Photo.UserComment"]
    assert exif["Exif.Image.Software"] == "Avow 0.1.0"
    assert "Exif.Image.Make" not in exif and "Exif.Image.Model" not in exif


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_the_exif_block_is_complete(tmp_path, ext):
    """EXIF 2.32's required tags are there, so readers see a whole EXIF block (exiftool -validate).
    (A TIFF's resolution tags live in its image IFD, which exiv2 leaves as the pixel writer made it.)"""
    out = signed_output(tmp_path, ext)
    exif, _ = read_metadata(out)
    assert exif["Exif.Photo.ExifVersion"] == "48 50 51 50" and exif["Exif.Photo.ColorSpace"] == "1"
    assert (exif["Exif.Photo.PixelXDimension"], exif["Exif.Photo.PixelYDimension"]) == ("192", "160")
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool is not installed")
    result = subprocess.run(["exiftool", "-validate", "-warning", "-a", str(out)], capture_output=True, text=True, check=True)
    warnings = [line for line in result.stdout.splitlines() if line.startswith("Warning")]
    # exiftool 12.x misreads the offsets of an eXIf chunk that follows a caBX (JUMBF) chunk.
    assert [w for w in warnings if "JUMBFBox" not in w] == [], result.stdout


def test_only_rights_travel_from_the_input(tmp_path):
    source = tmp_path / "camera.jpg"
    Image.fromarray(photo()).save(source)
    with pyexiv2.Image(str(source)) as image:
        image.modify_exif({"Exif.Image.Make": "Canon", "Exif.Image.Model": "EOS", "Exif.Image.Copyright": "(c) Ann"})
    exif, xmp = read_rights(source)
    assert exif == {"Exif.Image.Copyright": "(c) Ann"} and xmp == {}


def test_disclosure_on_a_non_image_fails_loudly(tmp_path):
    bogus = tmp_path / "bogus.jpg"
    bogus.write_bytes(b"not a jpeg at all")
    with pytest.raises(DisclosureError, match=r"bogus\.jpg"):
        write_disclosure(bogus, DISCLOSURE)


def test_users_own_certificate_is_used_and_a_mismatched_pair_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path / "other"))
    other = signing_identity()
    key, chain = tmp_path / "other" / "identity" / "signer.key", tmp_path / "other" / "identity" / "signer-chain.pem"
    assert signing_identity(key, chain).fingerprints()["leaf"] == other.fingerprints()["leaf"]
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path / "mine"))
    mine = tmp_path / "mine" / "identity"
    signing_identity()
    with pytest.raises(IdentityError, match="does not belong"):
        signing_identity(mine / "signer.key", chain)
    with pytest.raises(IdentityError, match="both"):
        signing_identity(key, None)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty file"), (b"hello, world", "not an image"), (b"\xff\xd8\xff\xe0" + b"\x00" * 10, None)],
)
def test_unreadable_inputs_get_a_verdict_not_a_traceback(tmp_path, content, expected):
    path = tmp_path / "received.jpg"
    path.write_bytes(content)
    report = verify_file(path, trust_anchors())
    if expected:
        assert report.verdict == "unreadable" and expected in report.summary and report.exit_code == 3
    else:  # a truncated JPEG is still a JPEG: it just carries no provenance
        assert report.verdict == NO_PROVENANCE


def test_printable_neutralises_terminal_escapes():
    hostile = "model\x1b[2J\x1b]0;owned\x07\u202eevil\n" + "x" * 1000
    shown = printable(hostile)
    assert "\x1b" not in shown and "\u202e" not in shown and "\n" not in shown and "\x07" not in shown
    assert len(shown) <= 300


def test_identity_private_key_never_in_output(tmp_path):
    out = signed_output(tmp_path, "png")
    key_body = (Path(os.environ["AVOW_CONFIG_DIR"]) / "identity" / "signer.key").read_text().splitlines()[1]
    assert key_body.encode() not in out.read_bytes()
    assert np.asarray(Image.open(out)).shape == (160, 192, 3)


def test_other_roots_are_trusted_only_when_configured(tmp_path, monkeypatch, avow_home):
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path / "newsroom"))
    theirs = signed_output(tmp_path, "png")
    their_root = tmp_path / "newsroom" / "identity" / "root.pem"
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(avow_home))
    assert verify_file(theirs, trust_anchors()).validation_state == "Valid"  # valid, signer unknown
    assert verify_file(theirs, trust_anchors([their_root])).validation_state == "Trusted"  # --trust
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path / "reader"))
    (tmp_path / "reader").mkdir()
    (tmp_path / "reader" / "config.toml").write_text(f'[verify]\ntrust = ["{their_root}"]\n')
    assert verify_file(theirs, trust_anchors()).validation_state == "Trusted"  # configured trust file


def test_contradictions_are_reported(tmp_path):
    unsigned = tmp_path / "claims-ai.jpg"
    Image.fromarray(photo()).save(unsigned)
    write_disclosure(unsigned, DISCLOSURE)
    with pyexiv2.Image(str(unsigned)) as image:
        image.modify_exif({"Exif.Image.Make": "Canon", "Exif.Image.Model": "EOS R5"})
    report = verify_file(unsigned, trust_anchors())
    assert report.verdict == NO_PROVENANCE
    assert "Unsigned XMP metadata says the pixels were AI-synthesized" in report.summary
    assert any("camera make/model" in note for note in report.notes)


def test_an_expired_signing_certificate_is_not_relied_on(tmp_path, monkeypatch):
    import datetime
    import time

    import avow_c2pa.keys as keys

    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path / "short-lived"))
    monkeypatch.setattr(keys, "LEAF_LIFETIME", datetime.timedelta(seconds=3))
    out = signed_output(tmp_path, "png")
    assert verify_file(out, trust_anchors()).verdict == AI_SYNTHESIZED
    time.sleep(4)
    report = verify_file(out, trust_anchors())
    assert report.verdict == TAMPERED and "signingCredential.expired" in report.status_codes
    assert report.summary.startswith("Signature not valid (") and "had expired" in report.summary
