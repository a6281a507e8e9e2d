"""The Krita side: two actions under Tools > Scripts, the settings dialog, progress and messages."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from krita import Extension, Krita
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QSpinBox,
    QVBoxLayout,
)

from . import core

MENU = "tools/scripts"
UPSCALE_ACTION = "avow_upscale"
EXPORT_ACTION = "avow_export_c2pa"
ACTIONS = {UPSCALE_ACTION: "AI Upscale (disclosed)...", EXPORT_ACTION: "Export with Content Credentials..."}
SETTINGS_GROUP = "avow_krita"


def _export_filters() -> str:
    """Qt's file-dialog filter, one entry per format: ``JPEG (*.jpg *.jpeg);;PNG (*.png);;...``."""
    patterns: dict[str, list[str]] = {}
    for suffix, name in core.EXPORT_FORMATS.items():
        patterns.setdefault(name, []).append(f"*{suffix}")
    return ";;".join(f"{name} ({' '.join(names)})" for name, names in patterns.items())


EXPORT_FILTERS = _export_filters()


def log(message: str) -> None:
    print(f"avow_krita: {message}", file=sys.stderr, flush=True)


def _setting(key: str, default: str) -> str:
    return Krita.instance().readSetting(SETTINGS_GROUP, key, default)


def _remember(key: str, value) -> None:
    Krita.instance().writeSetting(SETTINGS_GROUP, key, "" if value is None else str(value))


def _cached_description() -> dict:
    """The last worker's ``describe`` (models, devices), kept in kritarc; {} before the first use."""
    try:
        description = json.loads(_setting("describe", "") or "{}")
    except ValueError:
        return {}
    return description if isinstance(description, dict) and description.get("models") else {}


class DialogProgress(core.Progress):
    def __init__(self, parent, text: str) -> None:
        self.dialog = QProgressDialog(text, "Cancel", 0, 0, parent)
        self.dialog.setWindowTitle("Avow")
        self.dialog.setWindowModality(Qt.WindowModal)
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.show()

    def update(self, done: int, total: int) -> None:
        self.dialog.setMaximum(max(total, 1))
        self.dialog.setValue(min(done, total))

    def status(self, text: str) -> None:
        self.dialog.setLabelText(text)

    def cancelled(self) -> bool:
        return self.dialog.wasCanceled()

    def hide(self) -> None:
        self.dialog.hide()

    def show(self) -> None:
        self.dialog.reset()  # a Cancel pressed before the settings dialog must not cancel what follows it
        self.dialog.show()

    def close(self) -> None:
        self.dialog.close()


class LogProgress(core.Progress):
    """Batch mode (no window): status lines on stderr."""

    def __init__(self) -> None:
        self.last = -1

    def update(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent // 25 != self.last // 25 or done == total:
            log(f"progress {done}/{total}")
            self.last = percent

    def status(self, text: str) -> None:
        log(text)


class UpscaleDialog(QDialog):
    """Model, scale, device, tile; remembers the last choice in kritarc."""

    def __init__(self, parent, description: dict) -> None:
        super().__init__(parent)
        self.setWindowTitle("AI Upscale (disclosed)")
        layout = QVBoxLayout(self)
        note = QLabel(
            "The model invents plausible detail; it does not recover what the camera never captured. "
            "The result is a new layer named as AI-synthesized, and the document records it: "
            "Tools > Scripts > Export with Content Credentials declares it in the exported file."
        )
        note.setWordWrap(True)
        layout.addWidget(note)
        form = QFormLayout()
        layout.addLayout(form)

        self.model = QComboBox()
        self.model.addItem("Default for the scale", None)
        self.model_scales = {}
        for model in description.get("models", []):
            self.model.addItem(f"{model['name']} (x{model['scale']}, {model.get('origin', '')})", model["name"])
            self.model_scales[model["name"]] = int(model["scale"])
        self.scale = QComboBox()
        for scale in (2, 4):
            self.scale.addItem(f"x{scale}", scale)
        self.device = QComboBox()
        for device in description.get("devices", ["auto", "cpu"]):
            self.device.addItem(device, device)
        self.tile = QSpinBox()
        self.tile.setRange(64, 4096)
        self.tile.setSingleStep(64)
        form.addRow("Model", self.model)
        form.addRow("Scale", self.scale)
        form.addRow("Device", self.device)
        form.addRow("Tile (pixels)", self.tile)

        self._select(self.model, _setting("model", "") or None)
        self._select(self.scale, int(_setting("scale", "4") or 4))
        self._select(self.device, _setting("device", "auto"))
        self.tile.setValue(int(_setting("tile", "") or description.get("default_tile") or core.DEFAULT_TILE))
        self.model.currentIndexChanged.connect(self._model_changed)
        self._model_changed()

        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    @staticmethod
    def _select(combo: QComboBox, value) -> None:
        index = combo.findData(value)
        if index >= 0:
            combo.setCurrentIndex(index)

    def _model_changed(self) -> None:
        scale = self.model_scales.get(self.model.currentData())
        if scale is not None:
            self._select(self.scale, scale)
        self.scale.setEnabled(scale is None)

    def settings(self) -> core.Settings:
        settings = core.Settings(
            model=self.model.currentData(),
            scale=self.scale.currentData(),
            device=self.device.currentData(),
            tile=self.tile.value(),
        )
        for key in ("model", "scale", "device", "tile"):
            _remember(key, getattr(settings, key))
        return settings


class AvowExtension(Extension):
    def __init__(self, parent) -> None:
        super().__init__(parent)
        self.last_error: str | None = None
        self.last_info: str | None = None
        self.last_worker_wait: float | None = None  # seconds from the last action to its worker's first answer

    def setup(self) -> None:
        app = QApplication.instance()
        if app is not None:  # the warm worker goes with Krita (its closed stdin would end it anyway)
            app.aboutToQuit.connect(core.WARM.close)

    def _worker_answered(self, started: float) -> None:
        self.last_worker_wait = round(time.perf_counter() - started, 2)
        log(f"worker answered {self.last_worker_wait:.2f} s after the action")

    def createActions(self, window) -> None:
        for name, text in ACTIONS.items():
            action = window.createAction(name, text, MENU)
            action.setToolTip(
                "Upscale the active layer with Avow's AI model; the result is marked as synthesized"
                if name == UPSCALE_ACTION
                else "Export a JPEG/PNG/WebP/TIFF that declares AI upscaling (EXIF/XMP and signed C2PA)"
            )
            action.triggered.connect(self.upscale_active if name == UPSCALE_ACTION else self.export_active)
        log(f"actions registered in Tools > Scripts: {', '.join(ACTIONS)}")

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _interactive() -> bool:
        app = Krita.instance()
        return not app.batchmode() and app.activeWindow() is not None

    @staticmethod
    def _parent():
        window = Krita.instance().activeWindow()
        return window.qwindow() if window is not None else None

    def _progress(self, text: str):
        return DialogProgress(self._parent(), text) if self._interactive() else LogProgress()

    def report_error(self, title: str, message: str) -> None:
        self.last_error = message
        log(f"error: {title}: {message}")
        if self._interactive():
            QMessageBox.warning(self._parent(), f"Avow: {title}", message)

    def report_info(self, title: str, message: str, floating: bool = False) -> None:
        self.last_info = message
        log(f"{title}: {message}")
        if not self._interactive():
            return
        view = Krita.instance().activeWindow().activeView()
        if floating and view is not None:
            view.showFloatingMessage(message, Krita.instance().icon("dialog-information"), 6000, 1)
        else:
            QMessageBox.information(self._parent(), f"Avow: {title}", message)

    # ------------------------------------------------------------ upscale

    def upscale_active(self) -> None:
        doc = Krita.instance().activeDocument()
        self.upscale_document(doc, doc.activeNode() if doc is not None else None)

    def upscale_document(self, doc, node, settings: core.Settings | None = None, progress=None):
        """The action's work; ``settings`` None asks with the dialog. The outcome, or None (reported)."""
        self.last_error = self.last_info = None
        try:
            core.check_node(doc, node)
            core.selection_region(doc)
        except core.AvowKritaError as exc:
            self.report_error("cannot upscale", str(exc))
            return None
        cached = _cached_description()
        if settings is None and cached:  # the dialog at once, from what the last worker described
            settings = self._ask(cached)
            if settings is None:
                return None
        progress = progress or self._progress("Starting Avow's worker...")
        started = time.perf_counter()
        try:
            with core.Session(progress=progress) as session:
                description = session.request("describe")
                self._worker_answered(started)
                kept = ("version", "models", "devices", "default_tile")
                _remember("describe", json.dumps({k: description.get(k) for k in kept}))
                if settings is None:  # the first use: the worker's start comes before the dialog
                    progress.hide()
                    settings = self._ask(description)
                    if settings is None:
                        return None
                    progress.show()
                core.check_settings(description, settings)
                outcome = core.upscale_document(doc, node, settings, session, progress)
        except core.WorkerError as exc:
            if exc.kind == "Cancelled":
                self.report_info("upscale cancelled", "Upscale cancelled; the document is unchanged.")
            else:
                self.report_error("upscale failed", f"{exc.message}\n\nThe document is unchanged.")
            return None
        except core.AvowKritaError as exc:
            self.report_error("upscale failed", f"{exc}\n\nThe document is unchanged.")
            return None
        except Exception as exc:  # noqa: BLE001 - Krita must never lose the user's work to a plugin bug
            log(traceback.format_exc())
            self.report_error("upscale failed", f"unexpected error: {exc}")
            return None
        finally:
            progress.close()
        width, height = outcome.size
        self.report_info(
            "upscaled",
            f"New layer '{outcome.layer_name}' ({width}x{height}). It is AI-synthesized; "
            "use Export with Content Credentials to keep that declared.",
            floating=True,
        )
        return outcome

    def _ask(self, description: dict) -> core.Settings | None:
        dialog = UpscaleDialog(self._parent(), description)
        return dialog.settings() if dialog.exec_() == QDialog.Accepted else None

    # ------------------------------------------------------------ export

    def export_active(self) -> None:
        doc = Krita.instance().activeDocument()
        if doc is None:
            self.report_error("cannot export", "no document is open")
            return
        folder = _setting("export_dir", "") or (str(Path(doc.fileName()).parent) if doc.fileName() else str(Path.home()))
        stem = Path(doc.fileName()).stem if doc.fileName() else (doc.name() or "export")
        path, chosen = QFileDialog.getSaveFileName(
            self._parent(), "Export with Content Credentials", str(Path(folder) / f"{stem}.jpg"), EXPORT_FILTERS
        )
        if not path:
            return
        if Path(path).suffix.lower() not in core.EXPORT_SUFFIXES:
            path += "." + chosen.split("*.")[1].split()[0].rstrip(")")
        _remember("export_dir", str(Path(path).parent))
        self.export_document(doc, path)

    def export_document(self, doc, path, progress=None):
        """Export, disclose, sign; the result (with the verify report) or None (reported)."""
        self.last_error = self.last_info = None
        progress = progress or self._progress("Starting Avow's worker...")
        started = time.perf_counter()
        try:
            with core.Session(progress=progress) as session:
                self._worker_answered(started)
                result = core.export_with_credentials(doc, path, session, progress)
        except core.WorkerError as exc:
            if exc.kind == "Cancelled":
                self.report_info("export cancelled", "Export cancelled; no file was written.")
            else:
                self.report_error("export failed", f"{exc.message}\n\nNo file was written.")
            return None
        except core.AvowKritaError as exc:
            self.report_error("export failed", f"{exc}\n\nNo file was written.")
            return None
        except Exception as exc:  # noqa: BLE001 - Krita must never lose the user's work to a plugin bug
            log(traceback.format_exc())
            self.report_error("export failed", f"unexpected error: {exc}\n\nNo file was written.")
            return None
        finally:
            progress.close()
        report = result["verify"]
        self.report_info(
            "exported",
            f"{result['file']}\n\n{report.get('summary', '')}\n(verdict: {report.get('verdict')}, "
            f"C2PA: {report.get('validation_state')})",
        )
        return result
