"""`avow upscale` end to end: pixels, disclosure, signing, and every way it must refuse or clean up."""

from __future__ import annotations

import datetime
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image, ImageCms
from safetensors.torch import save_file

from avow.engine import UpscaleOptions, upscale_file
from avow.errors import Cancelled, ImageError, UsageError
from avow_c2pa import watermark
from avow_c2pa.errors import SigningError
from avow_c2pa.metadata import read_metadata
from avow_c2pa.verify import AI_SYNTHESIZED, trust_anchors, verify_file
from avow_models.archs.srvgg import SRVGGNetCompact
from conftest import photo

ROOT = Path(__file__).resolve().parents[1]


def nearest_model(path: Path, scale: int) -> Path:
    """A real SRVGGNetCompact whose learned residual is zero: its output is exactly the
    nearest-neighbour upscale, so pixel values, alpha and 16-bit levels can be checked exactly."""
    torch.manual_seed(0)
    model = SRVGGNetCompact(num_feat=8, num_conv=2, scale=scale)
    last = model.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    save_file(model.state_dict(), str(path))
    return path


@pytest.fixture
def model_x2(tmp_path):
    return nearest_model(tmp_path / "nearest-x2.safetensors", 2)


@pytest.fixture
def model_x4(tmp_path):
    return nearest_model(tmp_path / "nearest-x4.safetensors", 4)


def nearest(array: np.ndarray, scale: int) -> np.ndarray:
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def marked(levels: np.ndarray, scale: int, watermark_id: str, peak: int) -> np.ndarray:
    """What the engine must write for the nearest model: the nearest-neighbour upscale of
    ``levels`` plus Avow's mark carrying ``watermark_id`` (alpha left alone)."""
    up = nearest(levels, scale).astype(np.float32) / peak
    color = watermark.embed(up[..., :3], int(watermark_id, 16), source_size=(levels.shape[1], levels.shape[0]))
    return np.concatenate([color, up[..., 3:]], axis=2) * peak


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_jpeg_to_png_is_disclosed_signed_and_exact(tmp_path, jpeg_in, model_x4):
    out = tmp_path / "out.png"
    result = upscale_file(jpeg_in, out, UpscaleOptions(model=str(model_x4), tile=16))
    assert result.output_size == (192, 160)
    levels = np.asarray(Image.open(jpeg_in).convert("RGB"))
    written = np.asarray(Image.open(out)).astype(float)
    assert np.abs(written - marked(levels, 4, result.disclosure.watermark_id, 255)).max() <= 0.5 + 1e-3
    assert np.abs(written - nearest(levels, 4)).max() >= 2  # the mark is there
    report = verify_file(out, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.validation_state == "Trusted"
    assert report.model["model"] == "nearest-x4" and report.model["scale"] == "4"
    assert report.model["sha256"] == result.disclosure.model_sha256
    assert report.metadata_agrees is True
    assert leftovers(tmp_path) == []


def test_16bit_png_with_alpha_stays_16bit_with_alpha(tmp_path, model_x2):
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 65536, size=(20, 24, 4), dtype=np.uint16)
    source = tmp_path / "deep.png"
    with open(source, "wb") as handle:
        png.Writer(24, 20, greyscale=False, alpha=True, bitdepth=16).write(handle, levels.reshape(20, -1))
    out = tmp_path / "deep-x2.png"
    result = upscale_file(source, out, UpscaleOptions(model=str(model_x2)))
    width, height, rows, info = png.Reader(filename=str(out)).asDirect()
    assert (width, height, info["bitdepth"], info["planes"]) == (48, 40, 16, 4)
    written = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(40, 48, 4)
    # 16-bit precision, not 8-bit steps
    assert np.abs(written - marked(levels, 2, result.disclosure.watermark_id, 65535)).max() <= 2
    assert verify_file(out, trust_anchors()).verdict == AI_SYNTHESIZED


def test_16bit_tiff_stays_16bit(tmp_path, model_x2):
    levels = np.random.default_rng(2).integers(0, 65536, size=(16, 20, 3), dtype=np.uint16)
    source = tmp_path / "deep.tif"
    tifffile.imwrite(source, levels, photometric="rgb")
    out = tmp_path / "deep-x2.tiff"
    result = upscale_file(source, out, UpscaleOptions(model=str(model_x2)))
    written = tifffile.imread(out)
    assert written.dtype == np.uint16 and written.shape == (32, 40, 3)
    assert np.abs(written - marked(levels, 2, result.disclosure.watermark_id, 65535)).max() <= 2
    assert verify_file(out, trust_anchors()).verdict == AI_SYNTHESIZED


def test_icc_profile_and_orientation_are_respected(tmp_path, model_x2):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    Image.fromarray(photo(40, 48)).save(source, exif=exif.tobytes(), icc_profile=icc, quality=95)
    out = tmp_path / "rotated-x2.png"
    upscale_file(source, out, UpscaleOptions(model=str(model_x2)))
    with Image.open(out) as image:
        assert image.size == (80, 96)  # upright: 40 wide, 48 tall, doubled
        assert image.info.get("icc_profile") == icc
        assert image.getexif().get(0x0112, 1) == 1


def test_alpha_into_jpeg_is_refused_rather_than_dropped(tmp_path, model_x2):
    source = tmp_path / "cutout.png"
    Image.fromarray(photo(channels=4)).save(source)
    with pytest.raises(ImageError, match="transparency"):
        upscale_file(source, tmp_path / "cutout.jpg", UpscaleOptions(model=str(model_x2)))
    assert leftovers(tmp_path) == [] and not (tmp_path / "cutout.jpg").exists()


def test_never_overwrites_the_input_nor_an_existing_output(tmp_path, jpeg_in, model_x2):
    original = jpeg_in.read_bytes()
    with pytest.raises(UsageError, match="overwrite the input"):
        upscale_file(jpeg_in, jpeg_in, UpscaleOptions(model=str(model_x2), force=True))
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="--force"):
        upscale_file(jpeg_in, existing, UpscaleOptions(model=str(model_x2)))
    assert existing.read_bytes() == b"keep me" and jpeg_in.read_bytes() == original
    upscale_file(jpeg_in, existing, UpscaleOptions(model=str(model_x2), force=True))
    assert verify_file(existing, trust_anchors()).verdict == AI_SYNTHESIZED


def expired_identity(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "expired")])
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(past).not_valid_after(past + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "expired.key", folder / "expired.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_fails_closed_when_signing_fails(tmp_path, jpeg_in, model_x2, monkeypatch):
    """c2pa refuses the expired certificate after pixels and XMP were written: nothing may remain.
    (Avow's own check refuses it before the work; it is switched off to reach c2pa's.)"""
    import avow_c2pa.keys

    monkeypatch.setattr(avow_c2pa.keys, "check_chain", lambda chain, path: None)
    outdir = tmp_path / "out"
    outdir.mkdir()
    key, cert = expired_identity(tmp_path)
    with pytest.raises(SigningError, match="not valid at time of signing"):
        upscale_file(jpeg_in, outdir / "x.jpg", UpscaleOptions(model=str(model_x2), key=key, cert=cert))
    assert list(outdir.iterdir()) == []


def test_cancel_leaves_nothing(tmp_path, jpeg_in, model_x2):
    outdir = tmp_path / "out"
    outdir.mkdir()
    calls = []
    with pytest.raises(Cancelled):
        upscale_file(jpeg_in, outdir / "x.png", UpscaleOptions(model=str(model_x2), tile=16),
                     on_progress=lambda done, total: calls.append((done, total)), should_stop=lambda: bool(calls))
    assert calls == [(1, 9)] and list(outdir.iterdir()) == []


def huge_png(path: Path, width: int, height: int) -> None:
    """A PNG header declaring a huge image over a tiny payload: a decompression-bomb shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_huge_dimensions_are_refused_before_decoding(tmp_path, model_x4):
    source = tmp_path / "bomb.png"
    huge_png(source, 12000, 12000)
    with pytest.raises(ImageError, match="budget"):
        upscale_file(source, tmp_path / "bomb-x4.png", UpscaleOptions(model=str(model_x4)))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avow", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    good = folder / "good.png"
    Image.fromarray(photo()).save(good)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:90])
    text = folder / "notes.png"
    text.write_text("this is not a picture\n")
    return {
        "zero-byte": (empty, "empty file"),
        "truncated": (truncated, "damaged or truncated"),
        "not an image": (text, "not an image"),
    }


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "not an image"])
def test_cli_bad_input_gets_one_clear_line(tmp_path, model_x2, case):
    source, message = bad_inputs(tmp_path)[case]
    out = tmp_path / "out.png"
    done = run_cli("upscale", str(source), "-o", str(out), "--model", str(model_x2), cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("avow: error:") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_wrong_extensions(tmp_path, model_x2):
    png_named_jpg = tmp_path / "actually-png.jpg"
    Image.fromarray(photo()).save(png_named_jpg, format="PNG")
    done = run_cli("upscale", str(png_named_jpg), "-o", str(tmp_path / "x.png"), "--model", str(model_x2), cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the content decides, and the manifest records it as PNG
    done = run_cli("upscale", str(png_named_jpg), "-o", str(tmp_path / "x.bmp"), "--model", str(model_x2), cwd=tmp_path)
    assert done.returncode == 3 and "output format must be one of" in done.stderr and "Traceback" not in done.stderr


def test_cli_upscale_then_verify_json(tmp_path, jpeg_in, model_x2):
    out = tmp_path / "out.webp"
    done = run_cli("upscale", str(jpeg_in), "-o", str(out), "--model", str(model_x2), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "disclosed (EXIF/XMP) and signed (C2PA)" in done.stdout
    done = run_cli("verify", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["schema"] == 2 and report["verdict"] == "ai-synthesized"
    assert report["validation_state"] == "Trusted" and report["ai_declared"] is True
    assert report["xmp"]["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    _, xmp = read_metadata(out)
    assert xmp["Xmp.avow.inputWidth"] == "48"


def test_a_camera_signed_input_shows_as_history_not_as_verdict(tmp_path, model_x2):
    from avow_c2pa.keys import signing_identity
    from avow_c2pa.manifest import sign_file

    capture = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
    raw = tmp_path / "raw.jpg"
    Image.fromarray(photo()).save(raw)
    camera = tmp_path / "camera.jpg"
    manifest = {
        "claim_generator_info": [{"name": "camera", "version": "1"}],
        "title": "camera.jpg",
        "assertions": [{"label": "c2pa.actions.v2", "created": True,
                        "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": capture}]}}],
    }
    sign_file(raw, camera, manifest, signing_identity(), parent=None)
    out = tmp_path / "camera-x2.jpg"
    upscale_file(camera, out, UpscaleOptions(model=str(model_x2)))
    report = verify_file(out, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED
    assert report.ingredients == [{"title": "camera.jpg", "relationship": "parentOf", "had_manifest": True,
                                   "signer": report.signer["common_name"], "digital_source_types": [capture],
                                   "path": ["camera.jpg"], "failures": []}]
    done = run_cli("verify", str(out), cwd=tmp_path)
    assert "made from: camera.jpg (parentOf), its own manifest signed by" in done.stdout and "(digitalCapture)" in done.stdout


def test_ctrl_c_mid_run_leaves_no_file(tmp_path):
    """SIGINT once the progress bar shows tiles done: the run is stopped mid-way, whatever the CPU speed."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import termios

    torch.manual_seed(0)
    slow = tmp_path / "slow-x4.safetensors"
    save_file(SRVGGNetCompact(num_feat=32, num_conv=8, scale=4).state_dict(), str(slow))
    source = tmp_path / "big.png"
    Image.fromarray(photo(600, 800)).save(source)
    outdir = tmp_path / "out"
    outdir.mkdir()
    terminal, stderr_end = pty.openpty()  # a terminal on stderr turns the progress bar on
    fcntl.ioctl(stderr_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a 0-column one shows nothing
    process = subprocess.Popen(
        [sys.executable, "-m", "avow", "upscale", str(source), "-o", str(outdir / "big-x4.png"), "--model", str(slow),
         "--tile", "32"], stdout=subprocess.PIPE, stderr=stderr_end, text=True,
        # As from an interactive shell: a suite started in the background (`cmd &`) inherits
        # SIGINT ignored, and then Python installs no Ctrl-C handler at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(stderr_end)
    shown = b""
    while b"/475" not in shown:  # tqdm shows "k/475": the run is under way (19 x 25 tiles)
        ready, _, _ = select.select([terminal], [], [], 60)
        assert ready, f"no progress shown: {shown!r}"
        shown += os.read(terminal, 4096)
        shown = shown[-200:]
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    rest = b""
    while select.select([terminal], [], [], 1)[0]:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:
            break
        if not chunk:
            break
        rest += chunk
    os.close(terminal)
    assert process.returncode == 130, rest
    assert b"cancelled; no file was written" in rest and b"Traceback" not in rest
    assert list(outdir.iterdir()) == []
