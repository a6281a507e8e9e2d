"""Every hostile or broken file gets a clear verdict: no traceback, no hang, no crash of the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avow_c2pa.isolation import VerifierPool
from avow_c2pa.verify import trust_anchors, verify_file
from hostile import HOSTILE_TITLE, corpus, signed


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, shared_home):
    os.environ["AVOW_CONFIG_DIR"] = str(shared_home)
    return corpus(tmp_path_factory.mktemp("hostile"))


def test_every_case_gets_an_acceptable_verdict(hostile):
    names = list(hostile)
    pool = VerifierPool(trust_anchors(), processes=2)
    reports = list(pool.verify([hostile[name][0] for name in names]))
    for name, report in zip(names, reports, strict=True):
        print(f"{name:42} {report.verdict:15} {report.summary[:90]!r}")
        assert report.verdict in hostile[name][1], f"{name}: {report.verdict}: {report.summary}"
    assert len(reports) == len(names) >= 17


def test_cli_prints_hostile_manifest_strings_safely(hostile, tmp_path):
    path = hostile["terminal escapes, 100k title, newlines"][0]
    done = subprocess.run([sys.executable, "-m", "avow", "verify", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout and "\x07" not in done.stdout
    assert len(done.stdout) < 5000  # the 100k-character title is bounded
    assert all(len(line) < 1000 for line in done.stdout.splitlines())
    done = subprocess.run([sys.executable, "-m", "avow", "verify", "--json", str(path)], capture_output=True,
                          text=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["verdict"] == "ai-synthesized" and "\x1b" not in done.stdout  # JSON escapes it
    assert report["model"]["model"] == HOSTILE_TITLE[:200]


def test_a_fifo_is_refused_unopened_and_the_run_goes_on(hostile):
    fifo = hostile["a FIFO where a file should be"][0]
    good = hostile["wrong extension (signed PNG named .jpg)"][0]
    reports = list(VerifierPool(trust_anchors(), processes=1).verify([fifo, good, fifo, good]))
    assert [r.verdict for r in reports] == ["unreadable", "ai-synthesized"] * 2
    assert "not a regular file" in reports[0].summary


def test_folders_recursively_with_a_summary(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    signed(tmp_path / "a", "jpg")
    signed(tmp_path / "a" / "b", "png")
    (tmp_path / "a" / "b" / "notes.txt").write_text("skipped: not an image name")
    (tmp_path / "a" / "broken.webp").write_bytes(b"RIFF")
    done = subprocess.run([sys.executable, "-m", "avow", "verify", str(tmp_path / "a")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3 and "add --recursive" in done.stderr
    done = subprocess.run([sys.executable, "-m", "avow", "verify", "-r", str(tmp_path / "a")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3, done.stderr  # highest: the unreadable one
    assert done.stdout.strip().splitlines()[-1] == "ai-synthesized: 2  unreadable: 1"


XCF = Path(__file__).parent / "data" / "avow-layers.xcf"  # saved by real GIMP 3.0.4: see make_avow_layers_xcf.py


def test_xcf_parasites_name_the_synthesized_layers_and_a_garbage_parasite_is_noted():
    report = verify_file(XCF, "")
    assert report.verdict == "no-provenance" and report.format == "xcf"
    assert report.xcf["synthesized_layers"] == ["Background (AI-upscaled x4, avow-compact-x4)"]
    assert report.xcf["records"] == [{"model_name": "avow-compact-x4", "scale": 4}]
    assert report.notes == ["the Background parasite avow-provenance is not valid JSON"]
    assert "AI-upscaled pixels: Background (AI-upscaled x4, avow-compact-x4)" in report.summary


def test_truncated_xcf_files_get_a_verdict(tmp_path):
    data = XCF.read_bytes()
    cuts = [tmp_path / f"cut-{n}.xcf" for n in (12, 40, len(data) // 3, len(data) // 2, len(data) - 20)]
    for cut in cuts:
        cut.write_bytes(data[: int(cut.stem.split("-")[1])])
    reports = list(VerifierPool("", processes=2).verify(cuts))
    for report in reports:
        print(f"{Path(report.file).name:12} {report.verdict:15} {report.summary[:90]!r}")
        assert report.verdict in ("unreadable", "no-provenance") and report.summary
