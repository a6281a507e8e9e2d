"""The worker process through the editors' own stdlib client: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avow import DEFAULT_TILE
from avow_c2pa.disclosure import COMPOSITE_WITH_AI
from avow_c2pa.formats import OUTPUT_SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin" / "client"))
import avow_client  # noqa: E402
from test_upscale import marked, nearest_model  # noqa: E402


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-home")
    with avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(home)}) as running:
        yield running


@pytest.fixture
def pixels(tmp_path):
    rng = np.random.default_rng(5)
    array = rng.random((12, 10, 4), dtype=np.float32)
    path = tmp_path / "in.npy"
    avow_client.write_npy(path, 10, 12, 4, array.astype("<f4").tobytes())
    return path, array


def test_npy_written_by_the_client_is_read_by_numpy_and_back(pixels):
    path, array = pixels
    assert np.array_equal(np.load(path), array)
    width, height, channels, data = avow_client.read_npy(path)
    assert (width, height, channels) == (10, 12, 4)
    assert np.array_equal(np.frombuffer(data, "<f4").reshape(12, 10, 4), array)


def test_describe(worker):
    info = worker.request("describe")
    assert info["default_models"] == {"2": "avow-compact-x2", "4": "avow-compact-x4"}
    assert "cpu" in info["devices"] and info["version"] == "0.1.0"
    # what the editor hooks would otherwise copy (tests/test_constants.py checks their fallbacks)
    assert info["output_formats"] == list(OUTPUT_SUFFIXES) and info["default_tile"] == DEFAULT_TILE
    assert info["ai_source_type"] == COMPOSITE_WITH_AI


def test_describe_lists_user_models_as_models_list_does(tmp_path):
    """The same torch-free descriptions as `avow models list`; a .pth is left out (unchecked)."""
    import torch

    from avow_models import builtin_models, describe_model

    folder = tmp_path / "models"
    folder.mkdir()
    mine = nearest_model(folder / "mine.safetensors", 2)
    mine.with_suffix(".toml").write_text('name = "my-nearest"\nlicense = "CC0-1.0"\n', encoding="utf-8")
    torch.save({}, folder / "theirs.pth")
    with avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}) as running:
        models = running.request("describe")["models"]
    expected = [{**d.to_dict(), "origin": "built-in"} for d in builtin_models()]
    assert models == json.loads(json.dumps([*expected, {**describe_model(mine).to_dict(), "origin": "user"}]))
    assert models[-1]["name"] == "my-nearest" and models[-1]["license"] == "CC0-1.0"


def test_upscale_with_progress_and_provenance(worker, pixels, tmp_path):
    path, array = pixels
    model = nearest_model(tmp_path / "nearest-x2.safetensors", 2)
    events = []
    result = worker.request(
        "upscale", input=str(path), output=str(tmp_path / "out.npy"), model=str(model), tile=4,
        on_progress=lambda done, total: events.append((done, total)),
    )
    assert (result["width"], result["height"], result["channels"]) == (20, 24, 4)
    assert events[-1] == (18, 18) and len(events) == 18  # 3x3 tiles, colour then alpha
    out = np.load(result["output"])
    record = result["provenance"]
    assert np.abs(out - marked(array, 2, record["watermark_id"], 1)).max() < 1e-5  # the nearest model's pixels, marked
    assert record["model_name"] == "nearest-x2" and record["scale"] == 2
    assert (record["input_width"], record["input_height"]) == (10, 12)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cancel_stops_and_leaves_nothing(worker, pixels, tmp_path):
    path, _ = pixels
    model = nearest_model(tmp_path / "nearest-x2.safetensors", 2)
    with pytest.raises(avow_client.WorkerError) as caught:
        worker.request("upscale", input=str(path), output=str(tmp_path / "out.npy"), model=str(model), tile=2,
                       should_cancel=lambda: True)
    assert caught.value.kind == "Cancelled"
    assert not (tmp_path / "out.npy").exists()
    assert worker.request("describe")["version"]  # still serving


@pytest.mark.parametrize(
    ("params", "kind", "words"),
    [
        ({"op": "nonsense"}, "ProtocolError", "unknown op"),
        ({"op": "upscale", "input": "/nonexistent.npy", "output": "/tmp/x.npy", "model": "no-such-model"},
         "UsageError", "/nonexistent.npy: no such file"),  # paths are checked before any model is looked up
        ({"op": "upscale", "input": str(ROOT / "pyproject.toml"), "output": str(ROOT / "tests" / "never.npy"),
          "model": "no-such-model"}, "ModelNotFoundError", "no-such-model"),
        ({"op": "upscale", "input": "x"}, "ProtocolError", "output"),
        ({"op": "verify", "file": "/nonexistent.png"}, None, None),
    ],
)
def test_errors_are_typed_with_a_message(worker, params, kind, words):
    op = params.pop("op")
    if kind is None:
        assert worker.request(op, **params)["verdict"] == "unreadable"
        return
    with pytest.raises(avow_client.WorkerError) as caught:
        worker.request(op, **params)
    assert caught.value.kind == kind and words in caught.value.message


def test_sign_an_editor_export_with_and_without_ai(worker, pixels, tmp_path):
    path, _ = pixels
    model = nearest_model(tmp_path / "nearest-x2.safetensors", 2)
    record = worker.request("upscale", input=str(path), output=str(tmp_path / "o.npy"), model=str(model))["provenance"]
    exported = tmp_path / "export.png"
    Image.new("RGB", (20, 24), (10, 20, 30)).save(exported)
    assert worker.request("sign", file=str(exported), provenance=[record], editor="GIMP 3.0.4")["ai_declared"]
    report = worker.request("verify", file=str(exported))
    assert report["verdict"] == "ai-synthesized" and report["validation_state"] == "Trusted"
    assert report["model"]["model"] == "nearest-x2" and report["metadata_agrees"] is True

    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    worker.request("sign", file=str(plain), provenance=[], editor="Krita 5.1.5")
    report = worker.request("verify", file=str(plain))
    assert report["verdict"] == "signed" and report["ai_declared"] is False


def test_bad_json_lines_and_closing_stdin(tmp_path):
    env = {**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "avow.worker"], input='not json\n[1]\n{"id": 7, "op": "describe"}\n',
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "ready" and events[0]["protocol"] == avow_client.PROTOCOL
    assert [e["error"] for e in events if e["event"] == "error"] == ["ProtocolError", "ProtocolError"]
    assert events[-1]["id"] == 7 and events[-1]["event"] == "result"


def test_the_worker_removes_the_scratch_folder_it_took_and_nothing_else(tmp_path):
    """GIMP kills a cancelled plug-in: its worker, seeing stdin close, removes the temp folder it was
    given; a folder without the hook's marker (or a link to one) is refused and left alone."""
    taken = Path(avow_client.scratch_dir(str(tmp_path / "taken-")))
    (taken / "in.npy").write_bytes(b"pixels")
    unmarked = tmp_path / "unmarked"
    unmarked.mkdir()
    link = tmp_path / "link"
    link.symlink_to(Path(avow_client.scratch_dir(str(tmp_path / "target-"))))
    lines = [{"id": n, "op": "scratch", "dir": str(d)} for n, d in enumerate((taken, unmarked, link, "relative"))]
    done = subprocess.run(
        [sys.executable, "-m", "avow.worker"], input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True, text=True, env={**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    events = {e["id"]: e for e in map(json.loads, done.stdout.splitlines()[1:])}
    assert events[0]["event"] == "result" and events[0]["dir"] == str(taken)
    assert [events[n].get("error") for n in (1, 2, 3)] == ["UsageError", "UsageError", "ProtocolError"]
    assert not taken.exists()
    assert unmarked.is_dir() and link.resolve().is_dir() and (link.resolve() / avow_client.SCRATCH_MARKER).is_file()


def test_unconfigured_hook_says_what_to_run(tmp_path):
    with pytest.raises(avow_client.WorkerUnavailable, match="avow install gimp"):
        avow_client.load_config(tmp_path)
    with pytest.raises(avow_client.WorkerUnavailable, match="cannot start"):
        with avow_client.Worker(str(tmp_path / "no-python")):
            pass


def test_install_gimp_and_krita(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "avow", "install", "gimp", "--print"], capture_output=True, text=True)
    assert done.returncode == 0 and "would copy the plug-in" in done.stdout
    assert not (tmp_path / "config").exists()
    for editor in ("gimp", "krita"):
        done = subprocess.run([sys.executable, "-m", "avow", "install", editor], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    gimp = tmp_path / "config" / "GIMP" / "3.0" / "plug-ins" / "avow-upscale"
    assert stat.S_IMODE((gimp / "avow-upscale.py").stat().st_mode) == 0o755
    assert avow_client.load_config(gimp)["python"] == sys.executable
    assert (gimp / "avow_client.py").read_bytes() == (ROOT / "plugin" / "client" / "avow_client.py").read_bytes()
    krita = tmp_path / "data" / "krita" / "pykrita"
    assert (krita / "avow_krita.desktop").exists() and (krita / "avow_krita" / "avow_client.py").exists()
    assert avow_client.load_config(krita / "avow_krita")["python"] == sys.executable
    assert "enable_avow_krita=true" in (tmp_path / "config" / "kritarc").read_text()
    done = subprocess.run([sys.executable, "-m", "avow", "package", "krita", "-o", str(tmp_path / "k.zip")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import zipfile

    names = zipfile.ZipFile(tmp_path / "k.zip").namelist()
    assert "avow_krita.desktop" in names and "avow_krita/avow_client.py" in names and "avow_krita/avow.json" in names


def test_handshake_takes_the_worker_of_the_installed_version_and_protocol(tmp_path):
    """`avow install` records the version and protocol beside the hook; the real worker's `ready` matches them."""
    hook = tmp_path / "hook"
    hook.mkdir()
    from avow.install import _config_step

    _config_step(hook, "krita").action()
    config = avow_client.load_config(hook, editor="krita")
    assert config["protocol"] == avow_client.PROTOCOL and config["version"]
    with avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}, installed=config) as running:
        assert running.request("describe")["version"] == config["version"]


@pytest.mark.parametrize("editor, mismatch", [("krita", {"version": "0.0.1"}), ("gimp", {"protocol": 99})])
def test_handshake_refuses_a_worker_of_another_release(tmp_path, editor, mismatch):
    """A hook installed for another Avow (or protocol) and the real worker: one line naming the editor's install command."""
    installed = {"python": sys.executable, "version": "0.1.0", "protocol": avow_client.PROTOCOL, **mismatch}
    (tmp_path / "avow.json").write_text(json.dumps(installed))
    config = avow_client.load_config(tmp_path, editor=editor)
    worker = avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(tmp_path)}, installed=config)
    with pytest.raises(avow_client.WorkerUnavailable, match=f"run: avow install {editor}$") as caught:
        worker.start()
    assert "\n" not in caught.value.message and "was installed for Avow" in caught.value.message
    assert worker._process is None  # the mismatched worker was ended
