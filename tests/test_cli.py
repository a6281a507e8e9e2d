"""The CLI's other commands, run as a user runs them: a subprocess, real files, real output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from avow_models.archs.srvgg import SRVGGNetCompact


def avow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avow", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_keys_show_prints_where_and_fingerprints(tmp_path, avow_home):
    done = avow("keys", "show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"identity: {avow_home / 'identity'}" in done.stdout
    assert "algorithm: es256" in done.stdout
    fingerprints = [line for line in done.stdout.splitlines() if "SHA-256:" in line]
    assert [line.split()[0] for line in fingerprints] == ["leaf", "root"]
    assert all(len(line.split()[-1]) == 95 for line in fingerprints)  # 32 bytes as aa:bb:...


def test_models_list_and_convert(tmp_path, avow_home):
    user_models = avow_home / "models"
    user_models.mkdir(exist_ok=True)
    model = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    checkpoint = tmp_path / "mine.pth"
    torch.save({"params_ema": model.state_dict()}, checkpoint)
    converted = user_models / "mine-x2.safetensors"
    done = avow("models", "convert", str(checkpoint), str(converted), cwd=tmp_path)
    assert done.returncode == 0 and converted.exists(), done.stderr
    done = avow("models", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "mine-x2" in line)
    assert row.split()[:4] == ["user", "mine-x2", "SRVGGNetCompact", "x2"]
    assert f"user models directory: {user_models}" in done.stdout
    converted.unlink()


def test_a_hostile_model_is_refused_with_one_line(tmp_path):
    script = tmp_path / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    image = Path(__file__).resolve().parents[1] / "models" / "samples" / "chelsea.jpg"
    done = avow("upscale", str(image), "-o", str(tmp_path / "out.png"), "--model", str(script), cwd=tmp_path)
    assert done.returncode == 3 and "model.pt" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.png").exists()


def test_verify_human_output_is_escaped_and_exit_codes_combine(tmp_path):
    hostile = tmp_path / "evil\x1b[31mname.jpg"
    hostile.write_bytes(b"")
    plain = tmp_path / "plain.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(plain)
    done = avow("verify", str(plain), str(hostile), cwd=tmp_path)
    assert done.returncode == 3  # the highest of no-provenance (2) and unreadable (3)
    assert "\x1b" not in done.stdout
    assert "plain.png: No provenance: cannot tell." in done.stdout
    assert "empty file" in done.stdout


def test_bad_arguments_exit_3_not_verifys_2(tmp_path):
    done = avow("verify", cwd=tmp_path)
    assert done.returncode == 3 and "avow: error:" in done.stderr
    done = avow("upscale", "x.jpg", "--scale", "3", "-o", "y.png", cwd=tmp_path)
    assert done.returncode == 3 and "invalid choice" in done.stderr
