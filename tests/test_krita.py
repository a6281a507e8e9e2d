"""The Krita plugin in real Krita 5.1 (Debian's), no mocks.

``avow install krita`` installs the plugin into a throwaway Krita profile (XDG_DATA_HOME,
XDG_CONFIG_HOME); ``kritarunner`` then runs tests/krita/avow_krita_driver.py inside headless
Krita, which imports the installed plugin and calls the entry points its actions call: upscale an
RGBA 8-bit and a 16-bit document, save and reopen them as .kra, export with Content
Credentials, and fail (bogus model, cancel, CMYK) without touching the document. The checks here
compare what Krita holds against the core's own output for the same pictures and run
``avow verify`` on the exports. One more test starts the real Krita GUI under Xvfb, where a
test-only plugin finds the actions in Tools > Scripts and triggers the upscale, dialog included.

Krita, PyQt5 and Xvfb come from ``scripts/setup-krita.sh`` (run here when they are missing).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image

from avow.engine import (
    UpscaleOptions,
    prepare_model,
    synthesize,
    upscale_file,
    watermark_payload,
)
from avow.images import read_picture, to_array
from conftest import photo
from editor_run import run_editor

pytestmark = pytest.mark.krita

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "tests" / "krita"
TILE = 256
NOISE = ("krita.lib.resources", "XML tag", "Tiles in memory", "Total tiles", "XDG_RUNTIME_DIR", "some tiles have leaked")


def show(request, text: str) -> None:
    """Print to the terminal even under pytest's capture: the transcript is part of the evidence."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:  # -p no:capture
        print(text, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(text, flush=True)


def ensure_krita(request) -> None:
    """scripts/setup-krita.sh is idempotent (a no-op taking well under a second once installed)."""
    started = time.perf_counter()
    setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup-krita.sh")], check=False, capture_output=True, text=True)
    show(request, f"\n[setup] $ scripts/setup-krita.sh ({time.perf_counter() - started:.1f} s)\n" + "\n".join(
        f"[setup] {line}" for line in (setup.stdout + setup.stderr).splitlines()
    ))
    assert setup.returncode == 0, f"scripts/setup-krita.sh failed: {setup.stderr}"
    for tool in ("kritarunner", "krita", "xvfb-run"):
        assert shutil.which(tool), f"{tool} missing after scripts/setup-krita.sh"


@pytest.fixture(scope="session")
def profile(request, tmp_path_factory, shared_home):
    """A throwaway Krita profile with the plugin installed by the real ``avow install krita``."""
    ensure_krita(request)
    root = tmp_path_factory.mktemp("krita-profile")
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "DISPLAY")}
    env.update(
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_RUNTIME_DIR=str(runtime),
        AVOW_CONFIG_DIR=str(shared_home),
        AVOW_WORKER_PYTHONPATH=os.environ.get("PYTHONPATH", ""),  # the worker runs the code under test
    )
    # The install runs with the tests' own import path, so a checkout under test installs its own plugin.
    install_env = dict(env, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    install = subprocess.run(
        [sys.executable, "-m", "avow", "install", "krita"], env=install_env, check=False, capture_output=True, text=True,
        timeout=120,
    )
    show(request, "\n[install] $ avow install krita\n" + "\n".join(f"[install] {line}" for line in install.stdout.splitlines()))
    assert install.returncode == 0, install.stderr
    pykrita = root / "data" / "krita" / "pykrita"
    return SimpleNamespace(root=root, env=env, pykrita=pykrita, kritarc=root / "config" / "kritarc", install=install.stdout)


def pictures(folder: Path) -> dict:
    """An RGBA 8-bit picture with an alpha ramp (fully transparent to opaque), its 16-bit sibling, a big RGB one."""
    rgba8 = photo(40, 48, channels=4)
    Image.fromarray(rgba8, "RGBA").save(folder / "rgba8.png")
    fine = np.random.default_rng(1).integers(0, 257, rgba8.shape)
    rgba16 = (rgba8.astype(np.uint16) * 257 + fine).astype(np.uint16)
    rgba16[..., 3] = rgba8[..., 3].astype(np.uint16) * 257
    with open(folder / "rgba16.png", "wb") as handle:
        png.Writer(48, 40, alpha=True, bitdepth=16, greyscale=False).write(handle, rgba16.reshape(40, -1).tolist())
    Image.fromarray(photo(384, 512), "RGB").save(folder / "big.png")
    return {"rgba8": folder / "rgba8.png", "rgba16": folder / "rgba16.png", "big": folder / "big.png"}


@pytest.fixture(scope="session")
def krita_run(request, profile, tmp_path_factory):
    """One headless Krita session runs every scenario (Krita's start-up is the slow part)."""
    work = tmp_path_factory.mktemp("krita-work")
    inputs = pictures(work)
    job = {
        "work": str(work),
        "tile": TILE,
        "upscales": {
            "rgba8": {"input": str(inputs["rgba8"]), "scale": 4, "exports": [".png", ".jpg", ".webp"]},
            "rgba16": {"input": str(inputs["rgba16"]), "scale": 2, "exports": [".tif"]},
            "rgbaf32": {
                "input": str(inputs["rgba8"]),
                "convert": ["RGBA", "F32", "sRGB-elle-V2-srgbtrc.icc"],
                "scale": 2,
                "exports": [],
            },
        },
        "failure_input": str(inputs["rgba8"]),
        "cancel_input": str(inputs["big"]),
    }
    (work / "job.json").write_text(json.dumps(job))
    env = dict(profile.env, QT_QPA_PLATFORM="offscreen", PYTHONPATH=f"{profile.pykrita}{os.pathsep}{DRIVERS}")
    command = ["kritarunner", "-s", "avow_krita_driver", "-f", "main", str(work / "job.json")]
    run = run_editor(command, env, work / "transcript.log")
    assert not run.timed_out, run.failure("kritarunner")
    seconds, output = run.seconds, run.output
    transcript = [line for line in output.splitlines() if line.strip() and not any(noise in line for noise in NOISE)]
    show(
        request,
        f"\n[kritarunner] $ QT_QPA_PLATFORM=offscreen kritarunner -s avow_krita_driver -f main job.json"
        f"  (exit {run.returncode}, {seconds:.1f} s incl. Krita's first-start resource setup)\n"
        + "\n".join(line for line in transcript
                    if line.startswith(("[krita]", "avow_krita:", "krita.scripting")) or "Error" in line),
    )
    results_file = work / "results.json"
    assert results_file.is_file(), f"kritarunner wrote no results (exit {run.returncode}):\n" + "\n".join(transcript[-40:])
    results = json.loads(results_file.read_text())
    assert "driver_error" not in results, results["driver_error"]
    return SimpleNamespace(work=work, inputs=inputs, results=results, scenarios=results["scenarios"], seconds=seconds)


def core_output(source: Path, target: Path, scale: int) -> np.ndarray:
    """What ``avow upscale`` writes for the same picture, as integers H x W x 4 (RGBA)."""
    upscale_file(source, target, UpscaleOptions(scale=scale, device="cpu", tile=TILE, force=True))
    if target.suffix == ".png":
        width, height, rows, info = png.Reader(filename=str(target)).asDirect()
        return np.vstack([np.asarray(row, dtype=np.int64) for row in rows]).reshape(height, width, info["planes"])
    raise AssertionError(target)


def krita_layer(raw: bytes, width: int, height: int, depth: str) -> np.ndarray:
    """Krita's RGBA U8/U16 layer bytes (B, G, R, A) as RGBA integers."""
    dtype = np.uint8 if depth == "U8" else np.dtype("<u2")
    return np.frombuffer(raw, dtype=dtype).reshape(height, width, 4)[..., [2, 1, 0, 3]].astype(np.int64)


def test_install_puts_the_plugin_where_krita_loads_it(request, profile, krita_run):
    assert (profile.pykrita / "avow_krita.desktop").is_file()
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(profile.pykrita / "avow_krita.desktop")
    assert desktop["Desktop Entry"]["X-KDE-Library"] == "avow_krita"
    assert desktop["Desktop Entry"]["ServiceTypes"] == "Krita/PythonPlugin"
    for name in ("__init__.py", "core.py", "extension.py", "pixels.py", "avow_client.py", "avow.json"):
        assert (profile.pykrita / "avow_krita" / name).is_file(), name
    config = json.loads((profile.pykrita / "avow_krita" / "avow.json").read_text())
    assert Path(config["python"]).exists()
    kritarc = configparser.ConfigParser(interpolation=None, strict=False)
    kritarc.read(profile.kritarc)
    assert kritarc["python"]["enable_avow_krita"] == "true"
    # kritarunner imported the installed copy, and its import registered the extension
    assert krita_run.results["plugin_file"] == str(profile.pykrita / "avow_krita" / "__init__.py")
    assert krita_run.results["extension_registered"]
    assert krita_run.results["krita_version"].startswith("5.")


@pytest.mark.parametrize("key, scale, depth, maximum", [("rgba8", 4, "U8", 255), ("rgba16", 2, "U16", 65535)])
def test_upscale_matches_the_core(request, krita_run, tmp_path, key, scale, depth, maximum):
    scenario = krita_run.scenarios[key]
    assert "error" not in scenario, scenario.get("error")
    assert scenario["input"] == {"size": [48, 40], "model": "RGBA", "depth": depth}
    assert scenario["size"] == [48 * scale, 40 * scale]
    assert (scenario["layer_model"], scenario["layer_depth"]) == ("RGBA", depth)
    assert scenario["channels_sent"] == 4  # the alpha ramp went to the model too
    names = [layer["name"] for layer in scenario["layers"]]
    model = f"avow-compact-x{scale}"
    assert names == ["Background", f"AI-upscaled x{scale} (Avow) - Background"]
    assert [layer["visible"] for layer in scenario["layers"]] == [False, True]

    width, height = scenario["size"]
    ours = krita_layer((krita_run.work / f"{key}.raw").read_bytes(), width, height, depth)
    core = core_output(krita_run.inputs[key], tmp_path / f"core-{key}.png", scale)
    assert core.shape == ours.shape == (height, width, 4)
    difference = np.abs(ours - core)
    show(
        request,
        f"\n[pixels] {key}: Krita layer {width}x{height} {depth} vs `avow upscale` on the same PNG: "
        f"max |diff| per channel (R,G,B,A) = {difference.max(axis=(0, 1)).tolist()} of {maximum}, "
        f"identical values {100 * float((difference == 0).mean()):.3f}%; "
        f"alpha {int(ours[..., 3].min())}..{int(ours[..., 3].max())}",
    )
    assert difference.max() <= 1  # rounding only: same model, same tiles, same numbers
    assert float((difference == 0).mean()) > 0.99
    # byte order: swapping red and blue would be far off on this picture
    assert np.abs(ours[..., [2, 1, 0, 3]] - core).max() > 8 * maximum // 255
    assert ours[..., 3].min() < maximum // 10 and ours[..., 3].max() == maximum  # alpha ramp kept

    (record,) = scenario["records"]
    provenance = record["provenance"]
    assert provenance["model_name"] == model and provenance["scale"] == scale
    assert (provenance["input_width"], provenance["input_height"]) == (48, 40)
    assert provenance["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert record["layer_name"] == names[1]
    assert scenario["info_has_sentence"]


def test_float_layer_matches_the_core(request, krita_run):
    """RGBA F32 (Krita stores it R, G, B, A, unlike the integer depths): floats in, floats out."""
    scenario = krita_run.scenarios["rgbaf32"]
    assert "error" not in scenario, scenario.get("error")
    assert scenario["input"] == {"size": [48, 40], "model": "RGBA", "depth": "F32"}
    assert (scenario["layer_model"], scenario["layer_depth"], scenario["size"]) == ("RGBA", "F32", [96, 80])
    width, height = scenario["size"]
    ours = np.frombuffer((krita_run.work / "rgbaf32.raw").read_bytes(), dtype="<f4").reshape(height, width, 4)
    model = prepare_model(UpscaleOptions(scale=2, device="cpu", tile=TILE))
    picture = read_picture(krita_run.inputs["rgba8"])
    core = to_array(synthesize(picture, model, torch.device("cpu"), TILE, watermark_payload(model, picture)))
    difference = np.abs(ours - core)
    show(request, f"\n[pixels] rgbaf32: Krita layer {width}x{height} F32 vs the core's float output: "
                  f"max |diff| {float(difference.max()):.2e}")
    assert difference.max() < 2e-3
    assert np.abs(ours[..., [2, 1, 0, 3]] - core).max() > 0.05  # byte order matters


@pytest.mark.parametrize("key", ["rgba8", "rgba16", "rgbaf32"])
def test_provenance_survives_a_kra_round_trip(request, krita_run, key):
    survives = krita_run.scenarios[key]["kra_round_trip"]
    show(request, f"\n[kra] {key}: after save + reopen: " + ", ".join(f"{k}={v}" for k, v in survives.items() if k != "layers"))
    assert survives["saved"]
    assert survives["size"] == krita_run.scenarios[key]["size"]
    for kept in ("layer_name", "layer_uuid", "layer_pixels", "annotation", "document_info_sentence", "source_layer_hidden"):
        assert survives[kept] is True, kept


def test_exports_verify_as_trusted_ai_synthesized(request, krita_run, shared_home):
    exported = []
    for key in ("rgba8", "rgba16"):
        for export in krita_run.scenarios[key]["exports"].values():
            assert "error" not in export, export
            exported.append((key, Path(export["file"])))
    assert {path.suffix for _, path in exported} == {".png", ".jpg", ".webp", ".tif"}
    env = dict(os.environ, AVOW_CONFIG_DIR=str(shared_home))
    verify = subprocess.run(
        [sys.executable, "-m", "avow", "verify", "--json", *(str(path) for _, path in exported)],
        env=env, check=False, capture_output=True, text=True, timeout=120,
    )
    reports = [json.loads(line) for line in verify.stdout.splitlines() if line.startswith("{")]
    lines = [f"[verify] {Path(r['file']).name}: {r['verdict']}, {r['validation_state']}, model {r['model']}" for r in reports]
    show(request, "\n[verify] $ avow verify --json " + " ".join(path.name for _, path in exported) + "\n" + "\n".join(lines))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert len(reports) == len(exported)
    for (key, _), report in zip(exported, reports, strict=True):
        scale = 4 if key == "rgba8" else 2
        assert report["verdict"] == "ai-synthesized", report
        assert report["validation_state"] == "Trusted", report
        assert report["ai_declared"] and report["metadata_agrees"] is not False
        assert report["model"]["model"] == f"avow-compact-x{scale}"
        assert report["xmp"]["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")

    # the exported pixels are the synthesized layer's (the hidden original does not show through)
    width, height = krita_run.scenarios["rgba8"]["size"]
    layer = krita_layer((krita_run.work / "rgba8.raw").read_bytes(), width, height, "U8")
    exported_png = np.asarray(Image.open(krita_run.work / "rgba8-export.png").convert("RGBA")).astype(np.int64)
    opaque = layer[..., 3] == 255
    assert exported_png.shape == layer.shape
    assert np.abs(exported_png - layer)[opaque].max() <= 1
    tiff = tifffile.imread(krita_run.work / "rgba16-export.tif")
    assert tiff.dtype == np.uint16 and tiff.shape == (80, 96, 4)
    assert not any(p.name.startswith(".avow-export-") for p in krita_run.work.iterdir())  # no staging left


@pytest.mark.parametrize("key", ["bogus_model", "cancelled"])
def test_worker_failure_leaves_the_document_unchanged(request, krita_run, key):
    scenario = krita_run.scenarios[key]
    assert scenario["outcome_is_none"]
    assert scenario["unchanged"], (scenario["before"], scenario["after"])
    assert len(scenario["after"]["layers"]) == 1
    if key == "bogus_model":
        assert "no-such-model" in scenario["error"] and "document is unchanged" in scenario["error"]
    else:
        assert scenario["error"] is None and "cancelled" in scenario["info"].lower()


def test_missing_setup_says_what_to_run(krita_run):
    scenario = krita_run.scenarios["not_set_up"]
    assert scenario["outcome_is_none"] and scenario["unchanged"]
    assert "avow install krita" in scenario["error"] and "document is unchanged" in scenario["error"]


def test_unsupported_colour_space_is_refused(krita_run):
    scenario = krita_run.scenarios["cmyk"]
    assert scenario["outcome_is_none"] and scenario["unchanged"]
    assert "CMYKA U8" in scenario["error"] and "Convert" in scenario["error"]


def test_gui_registers_the_actions_and_upscales(request, profile, tmp_path):
    """Real Krita GUI under Xvfb: the plugin loads from the installed profile, its actions sit in
    Tools > Scripts, and triggering the upscale (settings dialog accepted as shown) adds the layer."""
    shutil.copytree(DRIVERS / "avow_gui_probe", profile.pykrita / "avow_gui_probe", dirs_exist_ok=True)
    shutil.copy(DRIVERS / "avow_gui_probe.desktop", profile.pykrita / "avow_gui_probe.desktop")
    kritarc = configparser.ConfigParser(interpolation=None, strict=False)
    kritarc.optionxform = str
    kritarc.read(profile.kritarc)
    kritarc["python"]["enable_avow_gui_probe"] = "true"
    with open(profile.kritarc, "w") as handle:
        kritarc.write(handle, space_around_delimiters=False)
    out = tmp_path / "probe.json"
    env = dict(
        profile.env,
        AVOW_KRITA_PROBE_OUT=str(out),
        AVOW_KRITA_PROBE_INPUT=str(pictures(tmp_path)["rgba8"]),
        AVOW_KRITA_PROBE_UNDO_EXPORT=str(tmp_path / "undone.png"),
        AVOW_SCREENSHOTS=str(tmp_path),  # the dialogs and the window as the user sees them (kept by pytest)
    )
    gui = run_editor(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"], env, tmp_path / "transcript.log")
    assert not gui.timed_out, gui.failure("Krita's GUI")
    log = [line for line in gui.output.splitlines() if line.startswith(("avow_krita:", "avow_gui_probe:"))]
    show(request, f"\n[gui] $ xvfb-run krita --nosplash  (exit {gui.returncode}, {gui.seconds:.1f} s)\n"
                  + "\n".join(f"[gui] {line}" for line in log))
    assert out.is_file(), "the probe never ran:\n" + gui.output[-3000:]
    found = json.loads(out.read_text())
    assert "probe_error" not in found, found["probe_error"]
    assert any("actions registered in Tools > Scripts" in line for line in log)  # the plugin's own log line
    assert found["plugin_loaded"]
    assert found["actions"] == {
        "avow_upscale": "AI Upscale (disclosed)...", "avow_export_c2pa": "Export with Content Credentials...",
    }
    assert found["menu_paths"]["avow_upscale"] == ["Tools", "Scripts", "AI Upscale (disclosed)..."]
    assert found["menu_paths"]["avow_export_c2pa"] == ["Tools", "Scripts", "Export with Content Credentials..."]
    assert found["dialog"]["models"][1:] == ["avow-compact-x2 (x2, built-in)", "avow-compact-x4 (x4, built-in)"]
    assert found["progress_dialog_seen"]
    first, second = found["seconds_to_dialog"]
    show(request, f"\n[gui] menu click to the settings dialog: first use {first} s (the worker starts first), "
                  f"second use {second} s")
    assert found["after_second_use"] == {"size": found["after"]["size"], "layers": found["after"]["layers"]}  # cancelled
    assert found["after"]["last_error"] is None, found["after"]["last_error"]
    assert found["after"]["size"] == [192, 160]
    assert found["after"]["layers"] == ["Background", "AI-upscaled x4 (Avow) - Background"]
    assert found["after"]["annotations"] == ["avow/provenance"]

    # Edit > Undo of both steps: the annotation stays (outside Krita's undo), the claim goes with the layer.
    undone, redone = found["undo"]["undone"], found["undo"]["redone"]
    show(request, f"\n[undo] after Edit > Undo x2: {undone}\n[undo] after Edit > Redo x2: {redone}")
    assert undone["size"] == [48, 40] and not undone["layer_present"] and undone["records_in_annotation"] == 1
    assert undone["claimed"] == 0 and undone["error"] is None
    assert undone["ai_declared"] is False and undone["verdict"] == "signed"
    assert redone["size"] == [192, 160] and redone["layer_present"] and redone["claimed"] == 1
    assert redone["ai_declared"] is True and redone["verdict"] == "ai-synthesized"


def test_package_zip_is_accepted_by_kritas_plugin_importer(request, profile, tmp_path):
    archive = tmp_path / "avow_krita.zip"
    package = subprocess.run(
        [sys.executable, "-m", "avow", "package", "krita", "-o", str(archive)], env=profile.env, check=False,
        capture_output=True, text=True, timeout=120,
    )
    assert package.returncode == 0, package.stderr
    resources, out = tmp_path / "resources", tmp_path / "imported.json"
    resources.mkdir()
    env = dict(profile.env, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(DRIVERS))
    command = ["kritarunner", "-s", "avow_krita_driver", "-f", "import_package", str(archive), str(resources), str(out)]
    imported = run_editor(command, env, tmp_path / "transcript.log")
    assert not imported.timed_out, imported.failure("kritarunner")
    assert out.is_file()
    result = json.loads(out.read_text())
    show(
        request,
        f"\n[package] $ avow package krita -o avow_krita.zip: {package.stdout.strip()}\n"
        f"[package] Krita's plugin importer: imported {[p['name'] for p in result.get('imported', [])]}, "
        f"files {result.get('files')}"
        + (f", error {result['error']}" if "error" in result else ""),
    )
    assert "error" not in result, result["error"]
    assert [plugin["name"] for plugin in result["imported"]] == ["avow_krita"]
    for name in ("avow_krita.desktop", "avow_krita/__init__.py", "avow_krita/core.py", "avow_krita/avow_client.py",
                 "avow_krita/avow.json"):
        assert name in result["files"], name


@pytest.fixture(scope="session")
def krita_disclosure(request, profile, tmp_path_factory):
    """Its own kritarunner session, so the disclosure checks run (and time out) on their own."""
    work = tmp_path_factory.mktemp("krita-disclosure")
    Image.fromarray(photo(80, 96, seed=3), "RGB").save(work / "input.png")  # x2: more than one period of the mark
    (work / "job.json").write_text(json.dumps({"work": str(work), "tile": TILE, "input": str(work / "input.png")}))
    env = dict(profile.env, QT_QPA_PLATFORM="offscreen", PYTHONPATH=f"{profile.pykrita}{os.pathsep}{DRIVERS}")
    command = ["kritarunner", "-s", "avow_krita_driver", "-f", "disclosure", str(work / "job.json")]
    run = run_editor(command, env, work / "transcript.log")
    assert not run.timed_out, run.failure("kritarunner")
    show(request, f"\n[kritarunner] disclosure (exit {run.returncode}, {run.seconds:.1f} s)\n" + "\n".join(
        line for line in run.output.splitlines() if line.startswith(("[krita]", "avow_krita:"))
    ))
    results = json.loads((work / "disclosure.json").read_text())
    assert "driver_error" not in results, results["driver_error"]
    return results


def test_layer_name_and_colour_label_disclose(krita_disclosure):
    upscaled = krita_disclosure["upscaled"]
    assert [layer["name"] for layer in upscaled["layers"]] == ["Background", "AI-upscaled x2 (Avow) - Background"]
    assert upscaled["color_label"] == 7


def test_a_layer_copied_into_a_new_document_is_never_signed_as_human_edits(request, krita_disclosure):
    """No record travels with a duplicated layer; the pixels carry the mark: the export declares AI
    (the worker's sign reads the mark) or is refused, never signed as human edits only."""
    pasted = krita_disclosure["scenarios"]["pasted"]
    show(request, f"\n[disclosure] pasted layer: exported {pasted['exported']}, verdict {pasted['verdict']}, "
                  f"error {pasted['error']}")
    assert pasted["present_records"] == 0
    if pasted["exported"]:
        assert pasted["ai_declared"] and pasted["verdict"] == "ai-synthesized", pasted
    else:
        assert "carry Avow's mark" in pasted["error"] and "No file was written" in pasted["error"]
        assert not Path(pasted["file"]).exists()


def test_a_hidden_synthesized_layer_is_not_claimed(request, krita_disclosure):
    hidden = krita_disclosure["scenarios"]["hidden"]
    show(request, f"\n[disclosure] AI layer hidden: verdict {hidden['verdict']}, AI declared {hidden['ai_declared']}")
    assert hidden["exported"], hidden["error"]
    assert hidden["present_records"] == 0 and not hidden["ai_declared"]
    assert hidden["verdict"] == "signed"


def test_cancel_while_the_worker_starts(request, krita_disclosure):
    """Cancel during "Starting Avow's worker...": the worker is ended, no settings dialog or upscale follows."""
    cancelled = krita_disclosure["scenarios"]["cancel_start"]
    show(request, f"\n[cancel] during worker start: {cancelled['info']!r} after {cancelled['seconds']} s, "
                  f"workers left {cancelled['workers_left']}")
    assert cancelled["outcome_is_none"] and cancelled["unchanged"] and cancelled["error"] is None
    assert "cancelled" in cancelled["info"].lower()
    assert cancelled["workers_left"] == []


def test_one_warm_worker_serves_the_next_action_and_is_restarted_when_it_died(request, krita_disclosure):
    """The export after an upscale is answered by the same worker process (no second start); a worker
    killed between actions is replaced by the next action, which succeeds."""
    upscaled, scenarios = krita_disclosure["upscaled"], krita_disclosure["scenarios"]
    pasted, hidden = scenarios["pasted"], scenarios["hidden"]
    show(request, f"\n[warm] worker answered {upscaled['worker_wait']} s after the first action (cold start), "
                  f"{pasted['worker_wait']} s after the second (warm), {hidden['worker_wait']} s after one whose "
                  f"worker had been killed; workers {upscaled['workers']} -> {pasted['workers']} -> {hidden['workers']}; "
                  f"whole actions: upscale {upscaled['seconds']} s, export {pasted['seconds']} s, export after the kill "
                  f"{hidden['seconds']} s")
    assert len(upscaled["workers"]) == 1 and pasted["workers"] == upscaled["workers"]
    assert hidden["killed"] == upscaled["workers"] and hidden["exported"], hidden["error"]
    assert len(hidden["workers"]) == 1 and hidden["workers"] != hidden["killed"]
    idle = scenarios["idle"]  # the idle timeout (shortened by the driver) closes the warm worker
    assert len(idle["before"]) == 1 and idle["after"] == []


def test_a_selection_is_upscaled_alone_over_its_area(krita_disclosure):
    selection = krita_disclosure["scenarios"]["selection"]
    assert selection["size"] == [192, 160]
    assert selection["layer"] == "AI-upscaled x2 (Avow) - Background (selection)"
    assert selection["bounds"] == [20, 16, 80, 48] and selection["region"] == [10, 8, 40, 24]
    assert selection["source_visible"]  # the rest of the picture still shows
