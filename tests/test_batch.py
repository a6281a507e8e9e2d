"""`avow upscale IN... -o DIR`: one model load, each output signed on its own, failures reported, the rest done."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from avow import engine
from avow.batch import plan, upscale_many
from avow.engine import UpscaleOptions
from avow.errors import UsageError
from avow_c2pa.verify import AI_SYNTHESIZED, trust_anchors, verify_file
from conftest import photo
from test_upscale import nearest_model


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(3):
        Image.fromarray(photo(seed=number)).save(folder / f"p{number}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not a picture, not even tried\n")
    return folder


def test_one_model_load_each_output_signed_and_a_failure_reported(tmp_path, pictures, monkeypatch):
    model = nearest_model(tmp_path / "m.safetensors", 2)
    loads = []
    monkeypatch.setattr(engine, "load_model", lambda path, real=engine.load_model: loads.append(path) or real(path))
    outcomes = list(upscale_many([pictures], tmp_path / "out", UpscaleOptions(model=str(model))))
    assert len(loads) == 1
    assert [o.source.name for o in outcomes] == ["broken.jpg", "p0.png", "p1.png", "p2.png"]
    broken, *good = outcomes
    assert broken.error is not None and "broken.jpg" in str(broken.error) and not broken.target.exists()
    trust = trust_anchors()
    for outcome in good:
        assert outcome.error is None and outcome.target.name == outcome.source.stem + "-x2.png"
        report = verify_file(outcome.target, trust)
        assert report.verdict == AI_SYNTHESIZED and report.validation_state == "Trusted"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0-x2.png", "p1-x2.png", "p2-x2.png"]


def test_two_inputs_that_would_share_an_output_are_refused_up_front(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.png").touch()
    with pytest.raises(UsageError, match="would both be written"):
        plan([tmp_path / "a" / "same.png", tmp_path / "b" / "same.png"], tmp_path / "out", 4)


def test_cli_batch_exit_code_is_the_worst_failure(tmp_path, pictures):
    model = nearest_model(tmp_path / "m.safetensors", 2)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "avow", "upscale", str(pictures / "p0.png"), str(pictures / "broken.jpg"),
         str(pictures / "p1.png"), "-o", str(out), "--model", str(model)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("avow: error:") == 1 and "broken.jpg" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0-x2.png", "p1-x2.png"]
    assert "2 upscaled, 1 failed" in done.stdout
