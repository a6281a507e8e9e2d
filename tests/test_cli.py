"""The CLI's other commands, run as a user runs them: a subprocess, real files, real output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import safetensors.torch
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


LIST_WITHOUT_TORCH = (
    "import sys\nfrom avow import cli\n"
    "code = cli.main(['models', 'list'])\n"
    "print('exit', code, 'torch' in sys.modules, file=sys.stderr)"
)


def test_models_list_reads_headers_and_cards_without_torch(tmp_path):
    """Issue 14: listing imports no torch, yet says what loading the models would say."""
    from avow_models import builtin_models, load_model
    from avow_models.catalog import WEIGHTS_DIR

    user_models = tmp_path / "models"
    user_models.mkdir()
    mine = user_models / "mine.safetensors"
    net = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    safetensors.torch.save_file({f"module.{k}": v for k, v in net.state_dict().items()}, mine)
    mine.with_suffix(".toml").write_text('name = "my-denoiser"\nlicense = "CC-BY-4.0"\n', encoding="utf-8")
    pickled = user_models / "theirs.pth"
    torch.save({"params_ema": net.state_dict()}, pickled)
    (user_models / "broken.safetensors").write_bytes(b"\x00" * 7)
    env = {**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", LIST_WITHOUT_TORCH], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stderr.splitlines()[-1] == "exit 0 False", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["origin", "name", "arch", "scale", "size", "licence", "sha256"]
    rows = {fields[1]: fields for fields in (line.split() for line in lines[1:-1])}
    for d in builtin_models():
        assert rows[d.name] == ["built-in", d.name, d.arch, f"x{d.scale}", f"{d.size_bytes / 1e6:.2f}M", "MIT",
                                hashlib.sha256((WEIGHTS_DIR / f"{d.name}.safetensors").read_bytes()).hexdigest()]
    loaded = load_model(mine).descriptor
    assert rows["my-denoiser"] == ["user", "my-denoiser", "SRVGGNetCompact", "x2", f"{loaded.size_bytes / 1e6:.2f}M",
                                   "CC-BY-4.0", loaded.sha256]
    assert rows["theirs"] == ["user", "theirs", "unchecked", ".pth", "x?", f"{pickled.stat().st_size / 1e6:.2f}M",
                              "unknown", hashlib.sha256(pickled.read_bytes()).hexdigest()]
    assert "broken" not in rows and "skipping broken.safetensors: " in done.stderr
    assert "theirs.pth" in done.stderr and "avow models convert" in done.stderr
    assert lines[-1] == f"user models directory: {user_models}"
