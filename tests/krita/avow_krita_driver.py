"""Runs inside real Krita: ``QT_QPA_PLATFORM=offscreen kritarunner -s avow_krita_driver -f main JOB.json``.

With ``PYTHONPATH`` = the pykrita folder ``avow install krita`` wrote + this folder, it imports the
installed plugin (the same package Krita loads) and drives its own entry points, the ones the
Tools > Scripts actions call, with fixed settings instead of the dialog. It prints a transcript
and writes ``results.json`` plus raw layer pixels for tests/test_krita.py to check against the core.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
import traceback
from pathlib import Path


def say(message: str) -> None:
    print(f"[krita] {message}", flush=True)


def snapshot(doc) -> dict:
    """What 'the document is unchanged' means here: size, layers, every layer's pixels, annotations."""
    layers = []
    for node in doc.topLevelNodes():
        data = bytes(node.pixelData(0, 0, doc.width(), doc.height()))
        layers.append([node.name(), node.visible(), node.colorDepth(), hashlib.sha256(data).hexdigest()])
    return {
        "size": [doc.width(), doc.height()],
        "layers": layers,
        "annotations": sorted(doc.annotationTypes()),
        # the abstract only: Krita recomputes the editing time on every documentInfo() call
        "abstract": re.findall(r"<abstract>(.*?)</abstract>", doc.documentInfo(), re.DOTALL),
    }


def layers(doc) -> list:
    return [{"name": n.name(), "visible": n.visible(), "type": n.type(), "uuid": n.uniqueId().toString()}
            for n in doc.topLevelNodes()]


def main(args):
    from krita import Krita

    job = json.loads(Path(args[0]).read_text())
    work = Path(job["work"])
    app = Krita.instance()
    app.setBatchmode(True)  # no import/export dialogs (Krita asks about 16-bit PNGs otherwise)
    results: dict = {"krita_version": app.version(), "scenarios": {}}
    try:
        run(job, work, app, results)
    except Exception:  # noqa: BLE001 - the driver's error is its result, read by the test
        results["driver_error"] = traceback.format_exc()
        say("DRIVER ERROR\n" + results["driver_error"])
    (work / "results.json").write_text(json.dumps(results, indent=1))
    say("done")


def run(job: dict, work: Path, app, results: dict) -> None:
    import avow_krita
    from avow_krita import core, extension

    class CancelAfterFirstTile(core.Progress):
        """A progress sink that presses Cancel as soon as the first tile is reported."""

        def __init__(self) -> None:
            self.seen = 0

        def update(self, done: int, total: int) -> None:
            self.seen = max(self.seen, done)

        def cancelled(self) -> bool:
            return self.seen >= 1

    registered = [e for e in app.extensions() if isinstance(e, extension.AvowExtension)]
    results["plugin_file"] = avow_krita.__file__
    results["extension_registered"] = len(registered) == 1
    say(f"Krita {app.version()}; plugin imported from {avow_krita.__file__}; extension registered: {len(registered) == 1}")
    ext = avow_krita.EXTENSION
    tile = int(job["tile"])

    for key, spec in job["upscales"].items():
        scenario: dict = {}
        results["scenarios"][key] = scenario
        doc = app.openDocument(spec["input"])
        if "convert" in spec:  # e.g. RGBA F32 with the same sRGB curve: the values stay v / 255
            doc.setColorSpace(*spec["convert"])
            doc.waitForDone()
        node = doc.topLevelNodes()[0]
        doc.setActiveNode(node)
        scenario["input"] = {"size": [doc.width(), doc.height()], "model": node.colorModel(), "depth": node.colorDepth()}
        say(f"{key}: opened {Path(spec['input']).name}: {doc.width()}x{doc.height()} "
            f"{node.colorModel()} {node.colorDepth()} ({node.colorProfile()})")
        started = time.perf_counter()
        outcome = ext.upscale_document(
            doc, node, core.Settings(model=None, scale=spec["scale"], device="cpu", tile=tile), extension.LogProgress()
        )
        scenario["seconds"] = round(time.perf_counter() - started, 2)
        if outcome is None:
            scenario["error"] = ext.last_error
            say(f"{key}: upscale FAILED: {ext.last_error}")
            continue
        layer = doc.nodeByName(outcome.layer_name)
        raw = bytes(layer.pixelData(0, 0, doc.width(), doc.height()))
        (work / f"{key}.raw").write_bytes(raw)
        scenario.update(
            size=[doc.width(), doc.height()],
            layer_depth=layer.colorDepth(),
            layer_model=layer.colorModel(),
            channels_sent=outcome.channels_sent,
            layers=layers(doc),
            records=core.provenance_records(doc),
            info_has_sentence="AI-upscaled: pixels synthesized" in doc.documentInfo(),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
        )
        say(
            f"{key}: upscaled x{outcome.provenance['scale']} with {outcome.provenance['model_name']} in {scenario['seconds']} s: "
            f"{outcome.source_size[0]}x{outcome.source_size[1]} -> {doc.width()}x{doc.height()}; new layer '{outcome.layer_name}'"
            f" ({layer.colorModel()} {layer.colorDepth()}); source layer hidden: {not node.visible()}"
        )

        kra = work / f"{key}.kra"
        saved = doc.saveAs(str(kra))
        doc.close()
        again = app.openDocument(str(kra))
        reloaded = again.nodeByName(outcome.layer_name)
        raw_again = bytes(reloaded.pixelData(0, 0, again.width(), again.height())) if reloaded else b""
        survives = {
            "saved": bool(saved),
            "size": [again.width(), again.height()],
            "layers": layers(again),
            "layer_name": reloaded is not None,
            "layer_uuid": reloaded is not None and reloaded.uniqueId().toString() == outcome.layer_uuid,
            "layer_pixels": raw_again == raw,
            "annotation": core.provenance_records(again) == scenario["records"],
            "document_info_sentence": "AI-upscaled: pixels synthesized" in again.documentInfo(),
            "source_layer_hidden": [n.visible() for n in again.topLevelNodes()][:1] == [False],
        }
        scenario["kra_round_trip"] = survives
        say(f"{key}: saved {kra.name} and reopened: " + ", ".join(f"{k}={v}" for k, v in survives.items() if k != "layers"))

        exports = {}
        for suffix in spec["exports"]:
            target = work / f"{key}-export{suffix}"
            started = time.perf_counter()
            result = ext.export_document(again, str(target), extension.LogProgress())
            seconds = round(time.perf_counter() - started, 2)
            if result is None:
                exports[suffix] = {"error": ext.last_error}
                say(f"{key}: export {target.name} FAILED: {ext.last_error}")
                continue
            report = result["verify"]
            exports[suffix] = {
                "file": result["file"],
                "seconds": seconds,
                "verdict": report.get("verdict"),
                "validation_state": report.get("validation_state"),
                "summary": report.get("summary"),
            }
            say(
                f"{key}: exported {target.name} with Content Credentials in {seconds} s; worker's verify: "
                f"{report.get('verdict')} / {report.get('validation_state')}"
            )
        scenario["exports"] = exports
        again.close()

    # A worker failure (a model that does not exist) and a cancel must leave the document as it was.
    for key, source, settings, progress in (
        ("bogus_model", job["failure_input"], core.Settings(model="no-such-model", scale=4, device="cpu", tile=tile),
         extension.LogProgress()),
        ("cancelled", job["cancel_input"], core.Settings(model=None, scale=4, device="cpu", tile=64), CancelAfterFirstTile()),
    ):
        doc = app.openDocument(source)
        node = doc.topLevelNodes()[0]
        before = snapshot(doc)
        started = time.perf_counter()
        outcome = ext.upscale_document(doc, node, settings, progress)
        after = snapshot(doc)
        results["scenarios"][key] = {
            "outcome_is_none": outcome is None,
            "error": ext.last_error,
            "info": ext.last_info,
            "unchanged": before == after,
            "before": before,
            "after": after,
            "seconds": round(time.perf_counter() - started, 2),
        }
        say(
            f"{key}: plugin reported: {(ext.last_error or ext.last_info or '').splitlines()[0]!r}; "
            f"document unchanged: {before == after} ({after['size'][0]}x{after['size'][1]}, {len(after['layers'])} layer)"
        )
        doc.close()

    # Avow not set up (no avow.json beside the plugin): the message says what to run.
    config = core.PLUGIN_DIR / "avow.json"
    hidden = config.with_name("avow.json.hidden-by-test")
    doc = app.openDocument(job["failure_input"])
    before = snapshot(doc)
    config.rename(hidden)
    try:
        outcome = ext.upscale_document(doc, doc.topLevelNodes()[0], core.Settings(), extension.LogProgress())
    finally:
        hidden.rename(config)
    results["scenarios"]["not_set_up"] = {"outcome_is_none": outcome is None, "error": ext.last_error,
                                          "unchanged": before == snapshot(doc)}
    say(f"not_set_up: plugin reported: {ext.last_error.splitlines()[0]!r}")
    doc.close()

    # A colour space Avow does not handle is refused before any worker starts.
    doc = app.createDocument(8, 8, "cmyk", "CMYKA", "U8", "", 72.0)
    before = snapshot(doc)
    outcome = ext.upscale_document(doc, doc.topLevelNodes()[0], core.Settings(), extension.LogProgress())
    results["scenarios"]["cmyk"] = {"outcome_is_none": outcome is None, "error": ext.last_error,
                                    "unchanged": before == snapshot(doc)}
    say(f"cmyk: plugin reported: {ext.last_error!r}")
    doc.close()


def import_package(args):
    """``kritarunner -s avow_krita_driver -f import_package ZIP RESOURCES OUT.json``: Krita's own
    "Import Python Plugin from File..." logic (its plugin_importer module) on ``avow package krita``'s zip."""
    import importlib.util

    from krita import Krita

    archive, resources, out = args
    source = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict = {"krita_version": Krita.instance().version(), "importer": str(source)}
    try:
        imported = module.PluginImporter(archive, resources, lambda plugin: True).import_all()
        result["imported"] = [{k: plugin[k] for k in ("name", "ui_name", "desktop", "module")} for plugin in imported]
        folder = Path(resources) / "pykrita"
        result["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    except Exception as exc:  # noqa: BLE001 - the importer's error is its result, read by the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    Path(out).write_text(json.dumps(result, indent=1))
    say(f"import_package: {json.dumps(result)}")


def workers_of_this_process() -> list:
    """Avow workers this Krita started that are still alive (zombies excepted)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"avow.worker" in cmdline:
            left.append(int(stat.parent.name))
    return left


def wait_for_no_workers() -> None:
    """Until the workers this Krita killed are gone and the plugin has seen their output end (a kill
    lands, and is noticed, a moment later)."""
    from avow_krita import core

    for _ in range(400):
        if not workers_of_this_process() and not core.WARM.alive():
            return
        time.sleep(0.05)
    raise RuntimeError(f"workers still running: {workers_of_this_process()}")


def disclosure(args):
    """``kritarunner -s avow_krita_driver -f disclosure JOB.json``: what an export may claim follows the
    document. An upscaled layer duplicated into a new document (no annotation there) and the
    original document with that layer hidden are exported with Content Credentials."""
    from krita import Krita

    job = json.loads(Path(args[0]).read_text())
    work = Path(job["work"])
    app = Krita.instance()
    app.setBatchmode(True)
    results: dict = {"scenarios": {}}
    try:
        import avow_krita
        from avow_krita import core, extension

        ext = avow_krita.EXTENSION
        doc = app.openDocument(job["input"])
        node = doc.topLevelNodes()[0]
        say(f"disclosure: opened {Path(job['input']).name}: {doc.width()}x{doc.height()}")
        settings = core.Settings(scale=2, device="cpu", tile=int(job["tile"]))
        started = time.perf_counter()
        outcome = ext.upscale_document(doc, node, settings, extension.LogProgress())
        upscale_seconds = round(time.perf_counter() - started, 2)
        if outcome is None:
            raise RuntimeError(f"upscale failed: {ext.last_error}")
        layer = doc.nodeByName(outcome.layer_name)
        records = len(core.provenance_records(doc))
        results["upscaled"] = {"layers": layers(doc), "color_label": layer.colorLabel(), "records": records,
                               "worker_wait": ext.last_worker_wait, "workers": workers_of_this_process(),
                               "seconds": upscale_seconds}
        say(f"disclosure: upscaled x2; layers {[n['name'] for n in layers(doc)]}, colour label {layer.colorLabel()}")

        # The synthesized layer duplicated into a new document: nothing there records the upscale.
        pasted = app.createDocument(doc.width(), doc.height(), "pasted", "RGBA", "U8", "", 72.0)
        copy = layer.duplicate()
        pasted.rootNode().addChildNode(copy, None)
        pasted.waitForDone()
        for name, target, export_doc in (
            ("pasted", work / "pasted.png", pasted),
            ("hidden", work / "hidden.png", doc),
        ):
            killed = None
            if name == "hidden":
                layer.setVisible(False)
                doc.refreshProjection()
                doc.waitForDone()
                killed = workers_of_this_process()  # the warm worker dies between actions: the next starts another
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                wait_for_no_workers()
            started = time.perf_counter()
            result = ext.export_document(export_doc, str(target), extension.LogProgress())
            results["scenarios"][name] = {
                "seconds": round(time.perf_counter() - started, 2),
                "layers": layers(export_doc),
                "present_records": len(core.present_records(export_doc)),
                "exported": result is not None and target.is_file(),
                "ai_declared": None if result is None else result["ai_declared"],
                "verdict": None if result is None else result["verify"].get("verdict"),
                "error": ext.last_error,
                "file": str(target),
                "worker_wait": ext.last_worker_wait,
                "workers": workers_of_this_process(),
                "killed": killed,
            }
            say(f"disclosure: {name}: " + json.dumps(results["scenarios"][name]))
        pasted.setModified(False)
        pasted.close()
        doc.setModified(False)
        doc.close()

        # Cancel pressed while "Starting Avow's worker...": the start ends, nothing else runs.
        class CancelAtOnce(core.Progress):
            def cancelled(self) -> bool:
                return True

        core.WARM.close(kill=True)  # a cold start, to cancel during it
        wait_for_no_workers()
        doc = app.openDocument(job["input"])
        before = snapshot(doc)
        started = time.perf_counter()
        outcome = ext.upscale_document(doc, doc.topLevelNodes()[0], core.Settings(scale=2, device="cpu"), CancelAtOnce())
        results["scenarios"]["cancel_start"] = {
            "outcome_is_none": outcome is None,
            "info": ext.last_info,
            "error": ext.last_error,
            "unchanged": snapshot(doc) == before,
            "seconds": round(time.perf_counter() - started, 2),
            "workers_left": workers_of_this_process(),
        }
        say("disclosure: cancel_start: " + json.dumps(results["scenarios"]["cancel_start"]))
        doc.close()

        # A selection: its bounding box is upscaled, into a layer over that area.
        from krita import Selection

        doc = app.openDocument(job["input"])
        selection = Selection()
        selection.select(10, 8, 40, 24, 255)
        doc.setSelection(selection)
        outcome = ext.upscale_document(doc, doc.topLevelNodes()[0], core.Settings(scale=2, device="cpu"), extension.LogProgress())
        if outcome is None:
            raise RuntimeError(f"selection upscale failed: {ext.last_error}")
        layer = doc.nodeByName(outcome.layer_name)
        bounds = layer.bounds()
        results["scenarios"]["selection"] = {
            "size": [doc.width(), doc.height()],
            "layer": outcome.layer_name,
            "bounds": [bounds.x(), bounds.y(), bounds.width(), bounds.height()],
            "source_visible": doc.topLevelNodes()[0].visible(),
            "region": core.provenance_records(doc)[-1]["source_region"],
        }
        say("disclosure: selection: " + json.dumps(results["scenarios"]["selection"]))
        doc.setModified(False)
        doc.close()

        # Unused for the idle timeout (shortened here to 0.2 s): the warm worker is closed.
        from PyQt5.QtWidgets import QApplication

        warm_before = workers_of_this_process()
        core.WARM.idle_ms = 200
        core.WARM.release(True)  # as an action's end does: the idle timer starts
        for _ in range(400):
            QApplication.processEvents()  # the timer fires on Krita's event loop
            if not workers_of_this_process():
                break
            time.sleep(0.05)
        results["scenarios"]["idle"] = {"before": warm_before, "after": workers_of_this_process()}
        say("disclosure: idle: " + json.dumps(results["scenarios"]["idle"]))
    except Exception:  # noqa: BLE001 - the driver's error is its result, read by the test
        results["driver_error"] = traceback.format_exc()
        say("DRIVER ERROR\n" + results["driver_error"])
    (work / "disclosure.json").write_text(json.dumps(results, indent=1))
    say("done")
