"""The GIMP 3 plug-in, in real GIMP: headless gimp-console-3.0 in a Debian 13 chroot, no mocks.

`pytest -m gimp` runs these alone. The chroot is built once by scripts/setup-gimp.sh (needs root and
the Debian mirror; cached in <repo>/.chroot/trixie); the plug-in is installed with `avow install
gimp` into a temp config dir; GIMP is driven through the PDB by tests/gimp/session.py, as a script
or batch job would drive it, in two GIMP sessions (the second reopens the first one's XCF). Each
session writes a JSON report the tests below check; the transcript goes to the test log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo
from editor_run import IDLE_LIMIT, process_gone, run_editor

pytestmark = pytest.mark.gimp

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "tests" / "gimp" / "session.py"
COMPOSITE_WITH_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
WIDTH, HEIGHT = 48, 40


class Transcript:
    """Lines for the CI log: printed past pytest's capture, so they show on success too."""

    def __init__(self, config) -> None:
        self._capture = config.pluginmanager.getplugin("capturemanager")

    def __call__(self, text: str) -> None:
        if self._capture is not None:
            with self._capture.global_and_fixture_disabled():
                print(text, flush=True)
        else:
            print(text, flush=True)


@pytest.fixture(scope="module")
def say(pytestconfig):
    return Transcript(pytestconfig)


@pytest.fixture(scope="module")
def gimp(say, tmp_path_factory):
    """The chroot (built if missing), a private workdir under /tmp (shared with the chroot), the plug-in installed."""
    started = time.monotonic()
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-gimp.sh")], check=False, capture_output=True, text=True, timeout=900
    )
    say(f"\n--- GIMP chroot: setup-gimp.sh ({time.monotonic() - started:.1f}s)\n{setup.stdout.strip()}")
    assert setup.returncode == 0, f"scripts/setup-gimp.sh failed:\n{setup.stdout}\n{setup.stderr}"

    work = Path(tempfile.mkdtemp(prefix="avow-gimp-test-", dir="/tmp"))  # /tmp: one path inside and outside
    home = work / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XDG_")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AVOW_CONFIG_DIR": str(work / "avow-config"),  # one signing identity for GIMP's exports and verify
        "AVOW_VENV": sys.prefix,  # the venv running these tests is the one the plug-in's worker uses
        "AVOW_WORKER_PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # and the code under test, not the venv's install
    }
    install = subprocess.run(
        [sys.executable, "-m", "avow", "install", "gimp"], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    assert install.returncode == 0, install.stderr
    plugin_dir = home / ".config" / "GIMP" / "3.0" / "plug-ins" / "avow-upscale"
    say(f"--- avow install gimp\n{install.stdout.strip()}")
    assert (plugin_dir / "avow-upscale.py").stat().st_mode & 0o111
    Image.fromarray(photo(HEIGHT, WIDTH)).save(work / "input.png")
    rgba = photo(HEIGHT, WIDTH, channels=4)
    gray = np.stack([rgba[..., :3].mean(axis=2).astype(np.uint8), rgba[..., 3]], axis=2)
    Image.fromarray(gray, "LA").save(work / "gray-alpha.png")
    Image.fromarray(photo(480, 640, seed=1)).save(work / "big.png")  # long enough to cancel mid-way
    Image.fromarray(photo(80, 96, seed=3)).save(work / "mark-input.png")  # x2: more than one period of the mark
    (work / "bogus.safetensors").write_bytes(b"this is not a model\x00" * 8)
    transcripts = tmp_path_factory.mktemp("gimp-transcripts")  # kept by pytest after the work dir is gone
    yield {"work": work, "env": env, "plugin_dir": plugin_dir, "transcripts": transcripts}
    shutil.rmtree(work, ignore_errors=True)


def run_gimp(gimp, say, phase: str, env: dict | None = None, wrapper: tuple = (), **paths) -> dict:
    work = gimp["work"]
    report = work / f"report-{phase}.json"
    task = work / f"task-{phase}.json"
    task.write_text(json.dumps({"phase": phase, "report": str(report), "tests": str(ROOT / "tests"),
                                **{k: str(v) for k, v in paths.items()}}))
    command = [
        str(ROOT / "scripts" / "gimp-run.sh"),
        *wrapper,
        "gimp-console-3.0",
        "-i",
        "--batch-interpreter=python-fu-eval",
        "-b",
        f"exec(open({str(SESSION)!r}).read(), {{'__name__': 'avow_gimp'}})",
        "--quit",
    ]
    env = {**(env or gimp["env"]), "AVOW_GIMP_TASK": str(task)}
    run = run_editor(command, env, gimp["transcripts"] / f"gimp-{phase}.log")
    if run.timed_out:
        pytest.fail(run.failure(f"GIMP ({phase})"))
    output = run.output
    shown = ("[gimp]", "GIMP-Error", "GIMP-CRITICAL", "Traceback", "  File ")
    lines = [line for line in output.splitlines() if line.startswith(shown)]
    heading = f"--- GIMP session '{phase}' ({run.seconds:.1f}s, exit {run.returncode}; transcript {run.transcript})"
    say(heading + "\n" + "\n".join(lines))
    assert report.exists(), f"GIMP wrote no report:\n{output}"
    result = json.loads(report.read_text())
    result["output"] = output
    assert result.get("done"), f"GIMP session {phase} did not finish:\n{output}"
    for name, step in result["steps"].items():
        assert "exception" not in step, f"{name}: {step['exception']}"
    return result


@pytest.fixture(scope="module")
def first(gimp, say):
    work = gimp["work"]
    return run_gimp(
        gimp,
        say,
        "upscale",
        input=work / "input.png",
        pixels=work / "layer.f32",
        plain_png=work / "plain-gimp-export.png",
        xcf=work / "upscaled.xcf",
        bogus_model=work / "bogus.safetensors",
        gray_input=work / "gray-alpha.png",
        gray_pixels=work / "gray-layer.f32",
        big_input=work / "big.png",
        avow_json=gimp["plugin_dir"] / "avow.json",
    )


@pytest.fixture(scope="module")
def second(gimp, first, say):
    work = gimp["work"]
    return run_gimp(
        gimp,
        say,
        "reopen",
        input=work / "input.png",
        xcf=work / "upscaled.xcf",
        signed_jpg=work / "signed.jpg",
        signed_png=work / "signed.png",
        unmarked_jpg=work / "unmarked.jpg",
        bad_export=work / "refused.bmp",
        pasted_jpg=work / "pasted.jpg",
        mark_input=work / "mark-input.png",
        clipboard_png=work / "clipboard.png",
        pixels_png=work / "pixels.png",
        damaged_jpg=work / "damaged.jpg",
    )


@pytest.fixture(scope="module")
def dialog(gimp, say):
    """GIMP under xvfb-run; its own GIMP config, so no "last used values" of the other sessions fill the dialog."""
    home = gimp["work"] / "home-dialog"
    env = {
        **gimp["env"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AVOW_SCREENSHOTS": str(gimp["transcripts"]),  # the dialogs as the user sees them, kept with the transcripts
    }
    install = subprocess.run(
        [sys.executable, "-m", "avow", "install", "gimp"], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    assert install.returncode == 0, install.stderr
    described = Path(gimp["env"]["XDG_CONFIG_HOME"]) / "GIMP" / "3.0" / "avow-describe.json"
    if described.is_file():  # a second use: the dialog lists the models the first sessions' worker described
        shutil.copy(described, home / ".config" / "GIMP" / "3.0" / "avow-describe.json")
    wrapper = ("xvfb-run", "--auto-servernum", "--server-args=-screen 0 1280x1024x24")
    return run_gimp(
        gimp, say, "dialog", env=env, wrapper=wrapper, input=gimp["work"] / "input.png", dialog_jpg=gimp["work"] / "dialog.jpg"
    )


WORKER_LINE = re.compile(r"^avow: worker (\d+) \((started|warm|own)\) answered in ([0-9.]+) s$", re.MULTILINE)


@pytest.fixture(scope="module")
def warm(gimp, say):
    """One GIMP session of many runs (tests/gimp/session.py, phase "warm"), with its own Avow config (for
    the idle setting); then the workers' fate once that GIMP has quit."""
    work = gimp["work"]
    config = work / "avow-config-warm"
    config.mkdir(exist_ok=True)
    result = run_gimp(
        gimp, say, "warm", env={**gimp["env"], "AVOW_CONFIG_DIR": str(config)}, input=work / "input.png",
        big_input=work / "big.png", export_1=work / "warm-1.jpg", export_2=work / "warm-2.jpg",
        export_3=work / "warm-3.jpg",
        avow_json=gimp["plugin_dir"] / "avow.json", avow_config=config,
    )
    # Each plug-in run that reached a worker said which one and how soon it answered (the plug-in's stderr).
    result["answers"] = [
        {"pid": int(pid), "how": how, "seconds": float(seconds)} for pid, how, seconds in WORKER_LINE.findall(result["output"])
    ]
    pids = {answer["pid"] for answer in result["answers"]}
    result["gone_after_quit"] = {pid: process_gone(pid) for pid in pids}
    return result


def test_the_second_run_finds_the_worker_warm(warm, say):
    """GIMP starts a new plug-in process per run; the first run starts the session's worker, the next
    upscale and both exports are answered by that same process."""
    steps, answers = warm["steps"]["warm_reuse"], warm["answers"]
    runs = [steps[name] for name in ("upscale_1", "upscale_2", "export_1", "export_2")]
    for name, run in zip(("upscale 1", "upscale 2", "export 1", "export 2"), runs, strict=True):
        assert run["status"] == "success", f"{name}: {run['error']}"
    first, *rest = answers[:4]
    cold_export = warm["steps"]["warm_restart"]["next"]
    figures = zip(("upscale 1", "upscale 2", "export 1", "export 2", "export after a kill"), answers,
                  [*runs, cold_export], strict=False)
    say("--- GIMP second-action latency (how the worker was found: worker answered / whole run): "
        + "; ".join(f"{name} {answer['how']} {answer['seconds']:.3f} s / {run['seconds']:.2f} s"
                    for name, answer, run in figures))
    assert first["how"] == "started"
    assert [answer["how"] for answer in rest] == ["warm"] * 3
    assert {answer["pid"] for answer in answers[:4]} == {first["pid"]}
    assert all(run["workers"] == [first["pid"]] for run in runs)


def test_a_killed_worker_is_restarted_by_the_next_run(warm):
    step, answers = warm["steps"]["warm_restart"], warm["answers"]
    assert step["killed"] == answers[0]["pid"] and step["ended"]
    assert step["next"]["status"] == "success", step["next"]["error"]
    assert answers[4]["how"] == "started" and answers[4]["pid"] != step["killed"]
    assert step["next"]["workers"] == [answers[4]["pid"]]


def test_cancel_keeps_the_worker_warm_for_the_next_run(warm):
    step, answers = warm["steps"]["warm_cancel"], warm["answers"]
    assert step["watcher_rc"] == 0, step["watcher"]
    assert step["status"] != "success" and step["unchanged"]
    assert f"warm worker {answers[4]['pid']} was upscaling" in step["watcher"]
    assert "removed" in step["watcher"] and "still running: True" in step["watcher"]
    assert step["next"]["status"] == "success", step["next"]["error"]
    assert answers[5] == {**answers[5], "pid": answers[4]["pid"], "how": "warm"}  # the cancelled run's
    assert answers[6]["pid"] == answers[4]["pid"] and answers[6]["how"] == "warm"  # the run after it


def test_an_idle_worker_exits_and_one_whose_gimp_quit_too(warm):
    step = warm["steps"]["warm_idle"]
    assert step["run"]["status"] == "success", step["run"]["error"]
    assert step["run"]["workers"] == [warm["answers"][7]["pid"]] and warm["answers"][7]["how"] == "warm"
    assert step["exited"] == [True] and step["sockets"] == []
    assert all(warm["gone_after_quit"].values()), warm["gone_after_quit"]


def test_a_plug_in_of_another_release_is_refused_with_what_to_run(warm):
    step = warm["steps"]["warm_version_mismatch"]
    assert step["status"] == "execution-error" and step["layers"] == 1
    assert "avow install gimp" in step["error"] and "0.0.1" in step["error"], step["error"]
    assert len(warm["answers"]) == 8  # the refused run never got to use the worker


def avow_cli(gimp, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avow", *args], check=False, capture_output=True, text=True, env=gimp["env"], timeout=300
    )


def verify(gimp, path: Path) -> dict:
    result = avow_cli(gimp, "verify", "--json", str(path))
    return json.loads(result.stdout.splitlines()[0])


def manifest_title(path: Path) -> str:
    import c2pa

    with c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
    return store["manifests"][store["active_manifest"]]["title"]


def test_procedures_registered_in_the_menus(first):
    found = first["steps"]["registration"]
    upscale = found["python-fu-avow-upscale"]
    assert upscale is not None, "python-fu-avow-upscale is not in GIMP's PDB"
    assert upscale["menu_paths"] == ["<Image>/Filters/Enhance"]
    assert upscale["menu_label"] == "AI Upscale (disclosed)..."
    assert {"model", "model-choice", "scale", "device", "tile", "output"} <= set(upscale["arguments"])
    assert upscale["devices"] == ["auto", "cpu"]  # no worker has described itself yet: never CUDA unasked
    export = found["python-fu-avow-export-signed"]
    assert export is not None, "python-fu-avow-export-signed is not in GIMP's PDB"
    assert export["menu_paths"] == ["<Image>/File/[Export]"]
    assert export["menu_label"] == "Export with Content Credentials..."
    assert "file" in export["arguments"]


def test_upscale_adds_a_named_layer_matching_avows_own_output(gimp, first, say):
    step = first["steps"]["upscale_layer"]
    assert step["status"] == "success", step["error"]
    after = step["after"]
    assert (after["width"], after["height"]) == (WIDTH * 4, HEIGHT * 4)
    assert [layer["name"] for layer in after["layers"]] == ["AI-upscaled x4 (Avow) - Background", "Background"]
    new, original = after["layers"]
    assert (new["width"], new["height"], new["offsets"]) == (WIDTH * 4, HEIGHT * 4, [0, 0])
    assert original["pixels_sha256"] == step["before"]["layers"][0]["pixels_sha256"], "the source layer was changed"
    assert step["same_image"]

    # The same picture through Avow's own command line: the plug-in must give the same pixels.
    core = gimp["work"] / "core.png"
    result = avow_cli(gimp, "upscale", str(gimp["work"] / "input.png"), "-o", str(core), "--device", "cpu", "--force")
    assert result.returncode == 0, result.stderr
    expected = np.asarray(Image.open(core).convert("RGB"), dtype=np.float32) / 255.0
    pixels = step["pixels"]
    got = np.fromfile(pixels["path"], dtype="<f4").reshape(pixels["height"], pixels["width"], 4)
    difference = np.abs(got[..., :3] - expected) * 255.0
    say(f"--- pixels: GIMP layer vs `avow upscale`: max |diff| {difference.max():.3f}/255, mean {difference.mean():.4f}/255")
    assert got.shape[:2] == expected.shape[:2]
    assert difference.max() <= 2.0 and difference.mean() <= 0.5
    assert np.all(got[..., 3] == 1.0)


def test_upscale_marks_the_image_layer_and_metadata(gimp, first):
    step = first["steps"]["upscale_layer"]
    after = step["after"]
    records = after["parasite"]
    assert isinstance(records, list) and len(records) == 1
    record = records[0]
    name = "AI-upscaled x4 (Avow) - Background"
    assert record["layer"] == name and record["model"] == "avow-compact-x4" and record["scale"] == 4
    assert len(record["sha256"]) == 64 and record["time"]
    assert record["provenance"]["model_sha256"] == record["sha256"]
    assert record["provenance"]["digital_source_type"] == COMPOSITE_WITH_AI
    assert (record["provenance"]["input_width"], record["provenance"]["input_height"]) == (WIDTH, HEIGHT)
    assert after["layers"][0]["parasite"] == record  # the synthesized layer carries its own record
    assert after["layers"][1]["parasite"] is None  # the source layer is not marked
    assert [layer["color_tag"] for layer in after["layers"]] == ["violet", "none"]  # seen at a glance in the dock
    assert after["xmp_digital_source_type"] == COMPOSITE_WITH_AI

    # GIMP's ordinary export (no Avow involved) already declares it through the image metadata.
    import pyexiv2

    assert step["plain_export"] == "success"
    with pyexiv2.Image(str(gimp["work"] / "plain-gimp-export.png")) as exported:
        xmp = exported.read_xmp()
    assert xmp.get("Xmp.iptcExt.DigitalSourceType") == COMPOSITE_WITH_AI


def test_upscale_to_a_new_image_leaves_the_source_alone(first):
    step = first["steps"]["upscale_new_image"]
    assert step["status"] == "success", step["error"]
    assert step["distinct"]
    new = step["new_image"]
    assert (new["width"], new["height"]) == (WIDTH * 2, HEIGHT * 2)
    assert [layer["name"] for layer in new["layers"]] == ["AI-upscaled x2 (Avow) - Background"]
    assert new["parasite"][0]["scale"] == 2 and new["parasite"][0]["output"] == "image"
    assert new["layers"][0]["parasite"] == new["parasite"][0]
    assert new["xmp_digital_source_type"] == COMPOSITE_WITH_AI
    source = step["source_after"]
    assert (source["width"], source["height"], len(source["layers"])) == (WIDTH, HEIGHT, 1)
    assert source["parasite"] is None


def test_gray_with_alpha_keeps_both_channels(gimp, first, say):
    step = first["steps"]["upscale_gray_alpha"]
    assert step["status"] == "success", step["error"]
    assert step["base_type"] == "gray"
    assert (step["after"]["width"], step["after"]["height"]) == (WIDTH * 2, HEIGHT * 2)
    core = gimp["work"] / "gray-core.png"
    result = avow_cli(
        gimp, "upscale", str(gimp["work"] / "gray-alpha.png"), "-o", str(core), "--model", "avow-compact-x2", "--tile", "0"
    )
    assert result.returncode == 0, result.stderr
    expected = np.asarray(Image.open(core).convert("LA"), dtype=np.float32) / 255.0
    pixels = step["pixels"]
    got = np.fromfile(pixels["path"], dtype="<f4").reshape(pixels["height"], pixels["width"], 2)
    difference = np.abs(got - expected) * 255.0
    say(f"--- gray+alpha: GIMP layer vs `avow upscale`: max |diff| {difference.max():.3f}/255 (gray, alpha)")
    assert difference.max() <= 2.0
    assert got[..., 1].min() < 0.1 and got[..., 1].max() > 0.9  # the transparency gradient survived


def test_cancel_stops_the_job_and_leaves_the_image_and_a_warm_worker(first):
    """GIMP's Cancel kills the plug-in (gimp_plug_in_close): its job must stop, its temp folder go and
    nothing change; the session's warm worker stays for the next run."""
    step = first["steps"]["cancel"]
    assert step["watcher_rc"] == 0, step["watcher"]
    assert step["status"] != "success"
    assert step["after"] == step["before"]
    assert "killed plug-in " in step["watcher"] and "still running: True" in step["watcher"]
    assert step["left"] == [], "the killed plug-in's temp folder was left behind (its worker removes it)"


def test_the_device_list_is_what_the_worker_reported(gimp, first, dialog):
    """The dialog's Device list comes from the worker's last describe (cached by the first sessions):
    on this machine, whose torch sees no CUDA GPU, CUDA is not offered."""
    cached = Path(gimp["env"]["XDG_CONFIG_HOME"]) / "GIMP" / "3.0" / "avow-describe.json"
    devices = json.loads(cached.read_text())["devices"]
    registered = dialog["steps"]["registration"]["python-fu-avow-upscale"]["devices"]
    assert registered == devices and devices[0] == "auto"
    import torch

    assert ("cuda" in registered) == torch.cuda.is_available()


def test_worker_failure_is_an_error_return_and_changes_nothing(first):
    step = first["steps"]["worker_failure"]
    assert step["status"] == "execution-error"
    assert step["error"] and step["error"].startswith("Avow:")
    assert step["after"] == step["before"]  # same size, layers, pixels, no parasite, no metadata
    assert len(step["after"]["layers"]) == 1 and step["after"]["parasite"] is None


def test_worker_unavailable_says_what_to_run(first):
    step = first["steps"]["worker_unavailable"]
    assert step["status"] == "execution-error"
    assert "avow install gimp" in step["error"]
    assert step["after"] == step["before"]


def test_parasites_survive_xcf_save_and_load(first, second):
    saved = first["steps"]["upscale_layer"]
    assert saved["xcf_saved"]
    reopened = second["steps"]["reopen_xcf"]
    assert reopened["parasite"] == saved["after"]["parasite"]
    assert [layer["parasite"] for layer in reopened["layers"]] == [layer["parasite"] for layer in saved["after"]["layers"]]
    assert reopened["xmp_digital_source_type"] == COMPOSITE_WITH_AI


def test_export_with_content_credentials_is_trusted_and_ai_synthesized(gimp, second, say):
    reopened = second["steps"]["reopen_xcf"]
    assert reopened["export_status"] == "success", reopened["export_error"]
    assert reopened["export_png_status"] == "success", reopened["export_png_error"]
    for name in ("signed.jpg", "signed.png"):
        report = verify(gimp, gimp["work"] / name)
        say(f"--- avow verify {name}: {report['verdict']}, {report['validation_state']}: {report['summary']}")
        assert report["verdict"] == "ai-synthesized"
        assert report["validation_state"] == "Trusted" and report["signer_trusted"]
        assert report["ai_declared"] and report["model"]["model"] == "avow-compact-x4"
        assert report["xmp"]["digital_source_type"] == COMPOSITE_WITH_AI and report["metadata_agrees"] is True
        assert manifest_title(gimp["work"] / name) == name  # signed under its own name, not a staging name
    with Image.open(gimp["work"] / "signed.jpg") as exported:
        assert exported.size == (WIDTH * 4, HEIGHT * 4)
    assert not list(gimp["work"].glob(".avow-export-*")), "a staged export was left behind"


def test_export_without_upscales_claims_no_ai(gimp, second, say):
    step = second["steps"]["export_plain_image"]
    assert step["status"] == "success", step["error"]
    report = verify(gimp, gimp["work"] / "unmarked.jpg")
    say(f"--- avow verify unmarked.jpg: {report['verdict']}, {report['validation_state']}: {report['summary']}")
    assert report["verdict"] == "signed" and report["validation_state"] == "Trusted"
    assert not report["ai_declared"]


def test_export_refuses_other_formats(gimp, second):
    step = second["steps"]["export_bad_extension"]
    assert step["status"] == "calling-error"
    assert ".bmp" in step["error"]
    assert not (gimp["work"] / "refused.bmp").exists()


def test_dialog_cancel_changes_nothing_and_ok_upscales(dialog):
    cancel = dialog["steps"]["dialog_cancel"]
    assert cancel["driver_rc"] == 0 and "dialog window" in cancel["driver"], cancel["driver"]
    assert cancel["status"] == "cancel"
    assert cancel["after"] == cancel["before"]
    ok = dialog["steps"]["dialog_ok"]
    assert ok["driver_rc"] == 0, ok["driver"]
    assert ok["status"] == "success", ok["error"]
    after = ok["after"]
    assert (after["width"], after["height"]) == (WIDTH * 2, HEIGHT * 2)
    assert [layer["name"] for layer in after["layers"]] == ["AI-upscaled x2 (Avow) - Background", "Background"]
    assert after["parasite"][0]["model"] == "avow-compact-x2"


def test_verify_finds_the_mark_in_an_xcf_layer_without_parasites(gimp, say):
    """An Avow output opened in GIMP and saved as XCF has no Content Credentials and none of Avow's
    parasites: the layer's pixels still say what it is, with the identifier the output declared."""
    work = gimp["work"]
    upscaled = avow_cli(gimp, "upscale", str(ROOT / "models" / "samples" / "chelsea.jpg"), "-o", str(work / "cat.png"),
                        "--scale", "2")
    assert upscaled.returncode == 0, upscaled.stderr
    script = (
        "from gi.repository import Gimp, Gio\n"
        f"image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({str(work / 'cat.png')!r}))\n"
        f"Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path({str(work / 'cat.xcf')!r}), None)\n"
    )
    saved = subprocess.run(
        [str(ROOT / "scripts" / "gimp-run.sh"), "gimp-console-3.0", "-i", "--batch-interpreter=python-fu-eval",
         "-b", script, "--quit"],
        check=False, capture_output=True, text=True, env=gimp["env"], timeout=IDLE_LIMIT,
    )
    assert (work / "cat.xcf").exists(), saved.stdout + saved.stderr
    report = verify(gimp, work / "cat.xcf")
    say(f"--- avow verify cat.xcf (an Avow output saved by GIMP as XCF): {report['verdict']}: {report['summary']}")
    assert report["verdict"] == "ai-watermarked", report["summary"]
    assert "(metadata removed)" in report["summary"]
    assert report["watermark"]["found"] and report["watermark"]["layer"]
    assert [report["watermark"]["identifier"]] == verify(gimp, work / "cat.png")["soft_bindings"]


def test_verify_reads_gimps_xcf(gimp, first, say):
    """`avow verify` on the XCF GIMP 3 itself saved: the parasites name the synthesized layer."""
    report = verify(gimp, gimp["work"] / "upscaled.xcf")
    say(f"--- avow verify upscaled.xcf: {report['verdict']}: {report['summary']}")
    assert report["verdict"] == "no-provenance", report["summary"]
    assert report["xcf"]["synthesized_layers"] == ["AI-upscaled x4 (Avow) - Background"]
    assert report["watermark"]["layer"] == "AI-upscaled x4 (Avow) - Background"  # searched first
    assert not report["watermark"]["found"]  # 160 x 192 pixels: less than one period of an x4 mark


def test_repeat_with_last_values_never_overwrites_unasked(gimp, second):
    step = second["steps"]["repeat_export"]
    assert step["status"] == "calling-error" and step["unchanged"]
    assert step["error"].startswith("Avow:") and "overwrite" in step["error"]


def test_a_layer_duplicated_into_a_new_image_is_declared(gimp, second, say):
    step = second["steps"]["pasted_layer"]
    assert step["state"]["parasite"] is None and step["state"]["layers"][0]["parasite"]
    assert step["status"] == "success", step["error"]
    report = verify(gimp, gimp["work"] / "pasted.jpg")
    say(f"--- avow verify pasted.jpg: {report['verdict']}, {report['validation_state']}: {report['summary']}")
    assert report["verdict"] == "ai-synthesized" and report["ai_declared"]


def test_pixels_pasted_without_records_are_never_signed_as_human_edits(gimp, second, say):
    """Copy and paste keeps the layer's record in GIMP 3 (the export declares it); the same pixels alone
    are declared AI by their mark (the worker's sign reads it) or refused with a message, never
    signed as edits only."""
    step = second["steps"]["clipboard_paste"]
    assert step["upscale_status"] == "success", step["upscale_error"]
    clipboard, alone = step["clipboard"], step["pixels_only"]
    assert clipboard["status"] == "success", clipboard["error"]
    report = verify(gimp, gimp["work"] / "clipboard.png")
    say(f"--- avow verify clipboard.png (pasted with its layer's record): {report['verdict']}: {report['summary']}")
    assert report["verdict"] == "ai-synthesized" and report["ai_declared"]
    assert alone["state"]["parasite"] is None and not any(layer["parasite"] for layer in alone["state"]["layers"])
    if alone["status"] == "success":
        report = verify(gimp, gimp["work"] / "pixels.png")
        say(f"--- avow verify pixels.png (the pixels alone): {report['verdict']}: {report['summary']}")
        assert report["verdict"] == "ai-synthesized" and report["ai_declared"]
    else:
        assert alone["status"] == "execution-error" and "carry Avow's mark" in alone["error"], alone
        assert not alone["exported"]


def test_a_damaged_parasite_fails_the_export_closed(second):
    step = second["steps"]["damaged_parasite"]
    assert step["status"] == "execution-error" and not step["exported"]
    assert step["error"].startswith("Avow: not exported:") and "damaged" in step["error"]


def test_a_model_typo_or_mismatch_is_refused_before_the_worker_starts(first):
    step = first["steps"]["model_checks"]
    assert step["unchanged"]
    typo, mismatch = step["typo"], step["mismatch"]
    assert typo["status"] == "calling-error" and "no model \u201cavow-compact-x3\u201d" in typo["error"]
    assert "avow-compact-x2, avow-compact-x4" in typo["error"] and "--" not in typo["error"]
    assert mismatch["status"] == "calling-error" and "choose Scale x2" in mismatch["error"]


def test_export_asks_before_it_overwrites(dialog):
    """Filters > Repeat shows the export dialog (Escape: cancelled); OK onto an existing file asks to
    replace it (Escape: cancelled); the file is untouched."""
    step = dialog["steps"]["dialog_export_asks"]
    assert step["first"]["status"] == "success", step["first"]["error"]
    assert step["repeat"]["status"] == "cancel" and step["repeat"]["driver_rc"] == 0, step["repeat"]
    assert "dialog window" in step["repeat"]["driver"]
    replace = step["replace"]
    assert replace["status"] == "cancel" and replace["replace_driver_rc"] == 0, replace
    assert "dialog window" in replace["replace_driver"]
    assert step["unchanged"]


def test_a_selection_is_upscaled_alone_over_its_area(first):
    step = first["steps"]["upscale_selection"]
    assert step["status"] == "success", step["error"]
    after = step["after"]
    assert (after["width"], after["height"]) == (WIDTH * 2, HEIGHT * 2)
    new = after["layers"][0]
    assert new["name"] == "AI-upscaled x2 (Avow) - Background (selection)"
    assert (new["width"], new["height"], new["offsets"]) == (48, 32, [16, 12])
    assert step["record"]["source_region"] == [8, 6, 24, 16]


def test_no_undo_group_assertion_in_the_sessions(first, second):
    """GIMP once logged `gimp_image_undo_group_end: assertion 'private->group_count > 0' failed`: every
    session's log (upscales, a cancel, failures, exports) stays free of undo-group complaints."""
    for session in (first, second):
        assert "undo_group" not in session["output"], session["output"]
