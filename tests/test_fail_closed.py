"""Fail closed, for real: a stop signal or a SIGKILL at any moment of a real `avow upscale` (or of
the worker's sign) leaves the complete disclosed output or nothing under an image name; what a
SIGKILL leaves is swept by the next run; broken weights and broken output are refused first.

Signals are sent at exact moments of the run (tests/signal_at.py), never after sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from avow.engine import UpscaleOptions, upscale_file
from avow_c2pa.staging import SUFFIX, staged_path, sweep
from avow_c2pa.verify import AI_SYNTHESIZED, trust_anchors, verify_file
from avow_models import UnsupportedModelError, load_model
from avow_models.archs.srvgg import SRVGGNetCompact
from conftest import photo
from test_upscale import nearest_model

HERE = Path(__file__).resolve().parent


def signal_at(moment: str, signame: str, *arguments: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "signal_at.py"), moment, signame, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def upscale_at(moment: str, signame: str, source: Path, target: Path, model: Path) -> subprocess.CompletedProcess:
    process = signal_at(moment, signame, "avow", "upscale", str(source), "-o", str(target), "--model", str(model),
                        "--tile", "16")
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "input.png"
    Image.fromarray(photo()).save(path)
    return path


@pytest.mark.parametrize(
    ("moment", "signame"),
    [("tile", "TERM"), ("stage", "INT"), ("sign", "HUP"), ("sdk-read", "TERM"), ("sdk-write", "INT"),
     ("replace", "TERM")],
)
def test_a_stop_signal_at_any_moment_leaves_nothing(tmp_path, source, moment, signame):
    """Inside the SDK's stream callbacks the signal used to be swallowed by ctypes: the Rust side then
    panicked and aborted the process, leaving `.out.<hex>.png` (marked pixels, no disclosure)."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    done = upscale_at(moment, signame, source, outdir / "out.png", nearest_model(tmp_path / "m.safetensors", 2))
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "avow: cancelled; no file was written", done.stderr
    assert list(outdir.iterdir()) == []


def test_sigkill_leaves_only_staged_files_and_the_next_run_sweeps_them(tmp_path, source):
    model = nearest_model(tmp_path / "m.safetensors", 2)
    outdir = tmp_path / "out"
    outdir.mkdir()
    for moment in ("sign", "sdk-write", "replace"):
        done = upscale_at(moment, "KILL", source, outdir / f"{moment}.png", model)
        assert done.returncode == -signal.SIGKILL, done.stderr
        left = sorted(p.name for p in outdir.iterdir())
        assert left and all(name.startswith(f".{moment}.png.") and name.endswith(SUFFIX) for name in left), left
    result = upscale_file(source, outdir / "next.png", UpscaleOptions(model=str(model), tile=16))
    assert [p.name for p in outdir.iterdir()] == ["next.png"]
    assert verify_file(result.output, trust_anchors()).verdict == AI_SYNTHESIZED


def test_sweep_spares_live_owners_and_other_files(tmp_path):
    target = tmp_path / "x.png"
    mine = staged_path(target, "pixels")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / mine.name.replace(f".{os.getpid()}-", f".{int(dead.stdout)}-")
    live = tmp_path / mine.name.replace(f".{os.getpid()}-", f".{os.getppid()}-")
    other = tmp_path / ".x.png.notes"
    for path in (mine, gone, live, other):
        path.write_bytes(b"")
    assert sweep(tmp_path) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, live, other))


def test_worker_stopped_while_signing_an_export_leaves_it_untouched(tmp_path, avow_home):
    exported = tmp_path / "export.png"
    Image.fromarray(photo()).save(exported)
    original = exported.read_bytes()
    worker = signal_at("sdk-write", "TERM", "avow.worker", stdin=subprocess.PIPE)
    assert json.loads(worker.stdout.readline())["event"] == "ready"
    worker.stdin.write(json.dumps({"id": 1, "op": "sign", "file": str(exported), "provenance": []}) + "\n")
    worker.stdin.flush()
    reply = json.loads(worker.stdout.readline())
    worker.stdin.close()
    assert worker.wait(timeout=120) == 130, worker.stderr.read()
    assert reply["id"] == 1 and reply["event"] == "error" and reply["error"] == "Cancelled"
    assert exported.read_bytes() == original and [p.name for p in tmp_path.iterdir()] == ["export.png"]


def broken_model(path: Path, how: str) -> Path:
    model = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    state = model.state_dict()
    if how == "nan":
        state["body.0.weight"][0, 0, 0, 0] = float("nan")
    elif how == "huge":  # finite, but activations overflow float32
        state = {k: v * 1e30 if k.endswith("weight") else v for k, v in state.items()}
    elif how == "flat":  # finite, every output pixel far below black
        torch.nn.init.zeros_(model.body[-1].weight)
        torch.nn.init.constant_(model.body[-1].bias, -1000.0)
        state = model.state_dict()
    save_file(state, str(path))
    return path


def test_nan_weights_are_refused_at_load_in_one_line(tmp_path, source):
    model = broken_model(tmp_path / "nan.safetensors", "nan")
    with pytest.raises(UnsupportedModelError, match=r"'body.0.weight' holds NaN or infinite values"):
        load_model(model)
    out = tmp_path / "out.png"
    done = subprocess.run([sys.executable, "-m", "avow", "upscale", str(source), "-o", str(out), "--model", str(model)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1 and "NaN" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("how", "words"), [("huge", "NaN or infinite"), ("flat", "one flat colour")])
def test_broken_output_is_refused_before_anything_is_written(tmp_path, source, how, words):
    model = broken_model(tmp_path / f"{how}.safetensors", how)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(UnsupportedModelError, match=words):
        upscale_file(source, outdir / "out.png", UpscaleOptions(model=str(model)))
    assert list(outdir.iterdir()) == []


def test_a_sound_model_on_a_flat_input_is_not_refused(tmp_path):
    flat = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(flat)
    result = upscale_file(flat, tmp_path / "out.png", UpscaleOptions(model=str(nearest_model(tmp_path / "m.safetensors", 2))))
    assert result.output.exists()
