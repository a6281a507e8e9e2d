"""Test-only pykrita plugin (tests/test_krita.py installs it into a throwaway Krita profile).

Once Krita's first main window exists it (1) looks for Avow's actions in Krita's action
collection and in the Tools > Scripts menu; (2) if ``$AVOW_KRITA_PROBE_INPUT`` names a picture,
opens it in a view, triggers Tools > Scripts > AI Upscale (disclosed)... as a user would, accepts
the settings dialog as shown (recording its choices) and records what the action did to the
document; (3) if ``$AVOW_KRITA_PROBE_UNDO_EXPORT`` names a file, undoes the upscale's two steps with
Edit > Undo and exports with Content Credentials there, then redoes them and exports again beside
it (``redo-`` prefix); then writes everything to ``$AVOW_KRITA_PROBE_OUT`` (JSON) and quits Krita.
"""

import json
import os
import time
import traceback

from krita import Extension, Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication, QMessageBox

NAMES = ("avow_upscale", "avow_export_c2pa")


def _title(action) -> str:
    return action.text().replace("&", "")


def _menu_paths(menu, prefix):
    for action in menu.actions():
        path = prefix + [_title(action)]
        if action.menu() is not None:
            yield from _menu_paths(action.menu(), path)
        elif action.objectName():
            yield action.objectName(), path


def shoot(name: str, widget) -> None:
    """With $AVOW_SCREENSHOTS, the first sight of each kind of window, as the user sees it."""
    folder = os.environ.get("AVOW_SCREENSHOTS")
    path = os.path.join(folder or "", f"krita-{name}.png")
    if folder and not os.path.exists(path):
        widget.grab().save(path)


class DialogWatcher:
    """Plays the user: accepts Avow's settings dialog and dismisses message boxes, noting both."""

    def __init__(self, found: dict, cancel_dialog: bool = False) -> None:
        self.found = found
        self.cancel_dialog = cancel_dialog
        self.started = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> None:
        for widget in QApplication.topLevelWidgets():
            if not widget.isVisible():
                continue
            shoot(type(widget).__name__, widget)
            if type(widget).__name__ == "UpscaleDialog":
                self.found["dialog"] = {
                    "models": [widget.model.itemText(i) for i in range(widget.model.count())],
                    "chosen_model": widget.model.currentText(),
                    "scale": widget.scale.currentText(),
                    "devices": [widget.device.itemText(i) for i in range(widget.device.count())],
                    "tile": widget.tile.value(),
                }
                self.found.setdefault("seconds_to_dialog", []).append(round(time.perf_counter() - self.started, 2))
                widget.reject() if self.cancel_dialog else widget.accept()
            elif isinstance(widget, QMessageBox):
                self.found.setdefault("message_boxes", []).append(widget.text())
                widget.done(QMessageBox.Ok)
            elif type(widget).__name__ == "QProgressDialog":
                self.found["progress_dialog_seen"] = True


def undo_and_export(app, doc, extension, target: str) -> dict:
    """Edit > Undo twice (the layer, then the resize), export; Edit > Redo twice, export again."""
    from avow_krita import core

    layer = next(n for n in doc.topLevelNodes() if n.name().startswith("AI-upscaled"))
    uuid = layer.uniqueId()
    steps = {"layer": layer.name()}
    for name, action, path in (
        ("undone", "edit_undo", target),
        ("redone", "edit_redo", os.path.join(os.path.dirname(target), "redo-" + os.path.basename(target))),
    ):
        for _ in range(2):
            app.action(action).trigger()
            doc.waitForDone()
        result = extension.export_document(doc, path)
        steps[name] = {
            "size": [doc.width(), doc.height()],
            "layers": [n.name() for n in doc.topLevelNodes()],
            "layer_present": uuid.toString() in [n.uniqueId().toString() for n in doc.topLevelNodes()],
            "records_in_annotation": len(core.provenance_records(doc)),
            "claimed": len(core.present_records(doc)),
            "ai_declared": None if result is None else result["ai_declared"],
            "verdict": None if result is None else result["verify"].get("verdict"),
            "error": extension.last_error,
        }
        print("avow_gui_probe: " + name + " " + json.dumps(steps[name]), flush=True)
    return steps


def report() -> None:
    app = Krita.instance()
    found = {
        "windows": len(app.windows()),
        "actions": {},
        "menu_paths": {},
        "plugin_loaded": "avow_krita" in {type(e).__module__.split(".")[0] for e in app.extensions()},
    }
    try:
        for name in NAMES:
            action = app.action(name)
            found["actions"][name] = None if action is None else _title(action)
        window = app.activeWindow() or (app.windows()[0] if app.windows() else None)
        if window is not None:
            for name, path in _menu_paths(window.qwindow().menuBar(), []):
                if name in NAMES:
                    found["menu_paths"][name] = path
        picture = os.environ.get("AVOW_KRITA_PROBE_INPUT")
        if picture and window is not None and app.action("avow_upscale") is not None:
            doc = app.openDocument(picture)
            window.addView(doc)
            found["before"] = {"size": [doc.width(), doc.height()], "layers": [n.name() for n in doc.topLevelNodes()]}
            watcher = DialogWatcher(found)
            app.action("avow_upscale").trigger()  # runs the whole action, dialogs included
            watcher.timer.stop()
            if os.environ.get("AVOW_SCREENSHOTS"):  # the Layers docker catches up with the new layer
                settle = time.perf_counter() + 2.0
                while time.perf_counter() < settle:
                    QApplication.processEvents()
                    time.sleep(0.05)
            shoot("window-after-upscale", window.qwindow())
            extension = next(e for e in app.extensions() if type(e).__name__ == "AvowExtension")
            found["after"] = {
                "size": [doc.width(), doc.height()],
                "layers": [n.name() for n in doc.topLevelNodes()],
                "annotations": doc.annotationTypes(),
                "last_info": extension.last_info,
                "last_error": extension.last_error,
            }
            # The second use: the dialog comes from the models the first one's worker described.
            watcher = DialogWatcher(found, cancel_dialog=True)
            app.action("avow_upscale").trigger()
            watcher.timer.stop()
            found["after_second_use"] = {"size": [doc.width(), doc.height()], "layers": [n.name() for n in doc.topLevelNodes()]}
            target = os.environ.get("AVOW_KRITA_PROBE_UNDO_EXPORT")
            if target:
                watcher = DialogWatcher(found)
                found["undo"] = undo_and_export(app, doc, extension, target)
                watcher.timer.stop()
            doc.setModified(False)
            doc.close()
    except Exception:  # noqa: BLE001 - the probe's error is its result, read by the test
        found["probe_error"] = traceback.format_exc()
    with open(os.environ["AVOW_KRITA_PROBE_OUT"], "w", encoding="utf-8") as handle:
        json.dump(found, handle)
    print("avow_gui_probe: " + json.dumps(found), flush=True)
    quit_action = app.action("file_quit")
    QTimer.singleShot(200, quit_action.trigger if quit_action is not None else QApplication.instance().quit)


class Probe(Extension):
    def setup(self) -> None:
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(1500, report))

    def createActions(self, window) -> None:
        pass


Krita.instance().addExtension(Probe(Krita.instance()))
