"""What the actions do to a document, without any dialog: upscale a layer, export with Content Credentials.

The heavy lifting (torch, c2pa, exiv2) runs in Avow's worker, a child process started with the
Python that ``avow install krita`` recorded in ``avow.json``. Krita's API is only touched from
the main thread; the worker's I/O and the pixel conversions run in a background thread while
Qt's event loop keeps turning, so Krita stays responsive and a progress dialog can cancel.

Provenance inside the document (Krita has no parasites): the new layer's name says it is
AI-synthesized, the document carries an annotation ``avow/provenance`` (JSON, saved in .kra
files under ``annotations/avow/provenance``) with the worker's provenance record for each
upscale, keyed by the synthesized layer's unique id, and the document information's abstract gets
a sentence. The annotation lives outside Krita's undo stack, so export claims only the records
whose layer the document still shows: after an undo, a deletion or with the layer hidden, the
record stays in the file but the claim goes. Pixels that carry Avow's mark without a record (a
layer copied from another document) are the worker's to declare; if the exported file would still
claim no AI over them, the export is refused (``avow_client.refuse_unclaimed_mark``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from krita import InfoObject, Krita
from PyQt5.QtCore import QByteArray, QEventLoop, QTimer

from . import pixels
from .warm import WarmWorker

try:  # `avow install krita` copies the client into this package
    from . import avow_client as client
except ImportError:  # running from a checkout of Avow: plugin/krita/avow_krita -> plugin/client
    _CHECKOUT_CLIENT = Path(__file__).resolve().parents[2] / "client"
    if not (_CHECKOUT_CLIENT / "avow_client.py").is_file():
        raise
    sys.path.insert(0, str(_CHECKOUT_CLIENT))
    import avow_client as client

WorkerError = client.WorkerError
WorkerUnavailable = client.WorkerUnavailable

PLUGIN_DIR = Path(__file__).resolve().parent
ANNOTATION = "avow/provenance"
ANNOTATION_DESCRIPTION = "Avow: provenance of AI-upscaled (synthesized) layers"
# Avow's own values, needed before a worker answers (the export dialog, a first Settings()). The
# worker's `describe` says them too; tests/test_constants.py keeps these equal to the core's.
EXPORT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF"}
EXPORT_SUFFIXES = tuple(EXPORT_FORMATS)
DEFAULT_TILE = 256
LAYER_COLOR_LABEL = 7  # purple in Krita's layer colour labels: synthesized pixels, at a glance
MASK_TYPES = ("transparencymask", "filtermask", "transformmask", "selectionmask", "colorizemask")


class AvowKritaError(Exception):
    """A failure to show the user as is."""


WARM = WarmWorker()  # this Krita session's worker


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # None: the default model for ``scale``
    scale: int | None = 4
    device: str = "auto"
    tile: int = DEFAULT_TILE


@dataclass(frozen=True)
class UpscaleOutcome:
    layer_name: str
    layer_uuid: str
    source_size: tuple
    size: tuple
    channels_sent: int
    provenance: dict


class Progress:
    """Where progress goes; the dialog in the GUI, nothing (or a log) in batch mode. ``hide``,
    ``show`` and ``close`` are the dialog's lifecycle, which the extension drives; without a
    window they do nothing."""

    def update(self, done: int, total: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def hide(self) -> None:
        pass

    def show(self) -> None:
        pass

    def close(self) -> None:
        pass


def editor_name() -> str:
    return f"Krita {Krita.instance().version()}"


def run_in_background(work, progress: Progress | None = None, state: dict | None = None):
    """``work()`` in a thread while Qt's event loop turns; its result, or its exception re-raised."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="avow-worker", daemon=True)
    thread.start()
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)

    def tick() -> None:
        if progress is not None and state is not None:
            if state.get("total"):
                progress.update(state["done"], state["total"])
            if progress.cancelled():
                state["cancel"] = True
        if not thread.is_alive():
            loop.quit()

    timer.timeout.connect(tick)
    timer.start()
    if thread.is_alive():
        loop.exec_()
    timer.stop()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


class Session:
    """An action's use of Krita's warm worker (``warm.WarmWorker``): started if none runs, kept for the
    next action unless the action left it in an unknown state."""

    def __init__(self, plugin_dir: Path = PLUGIN_DIR, progress: Progress | None = None) -> None:
        self.config = client.load_config(plugin_dir, editor="krita")
        self.progress = progress
        self.pool = WARM
        self.worker: client.Worker | None = None

    def __enter__(self) -> Session:
        state = {"done": 0, "total": 0, "cancel": False}  # Cancel works while the worker starts, too

        def make() -> client.Worker:
            return client.Worker(self.config["python"], env=client.worker_env(), installed=self.config)

        def start(worker: client.Worker) -> None:
            try:
                run_in_background(lambda: worker.start(should_cancel=lambda: state["cancel"]), self.progress, state)
            except BaseException:
                worker.close(kill=True)
                raise

        self.worker = self.pool.take(self.config, make, start)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # The worker answered every request (a refusal or a Cancel is an answer): it serves the next
        # action. One that stopped, or an error between request and answer, is not kept.
        answered = exc is None or isinstance(exc, AvowKritaError) or (
            isinstance(exc, WorkerError) and not isinstance(exc, WorkerUnavailable)
        )
        self.pool.release(answered)

    def request(self, op: str, progress: Progress | None = None, **params) -> dict:
        state = {"done": 0, "total": 0, "cancel": False}

        def on_progress(done: int, total: int) -> None:
            state["done"], state["total"] = done, total

        worker = self.worker
        assert worker is not None, "a Session's requests run inside its with block"

        def work() -> dict:
            return worker.request(op, on_progress=on_progress, should_cancel=lambda: state["cancel"], **params)

        return run_in_background(work, progress, state)


# ---------------------------------------------------------------- provenance in the document


def provenance_records(doc) -> list:
    """The upscale records this document carries (from the annotation; [] when none)."""
    if ANNOTATION not in doc.annotationTypes():
        return []
    try:
        data = json.loads(bytes(doc.annotation(ANNOTATION)).decode("utf-8"))
    except ValueError as exc:
        raise AvowKritaError(f"this document's Avow provenance annotation is damaged ({exc}); not exporting") from exc
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise AvowKritaError("this document's Avow provenance annotation is damaged; not exporting")
    return records


def present_records(doc) -> list:
    """The records whose synthesized layer the document still shows: what the export may claim.

    A record the hook cannot read stops the export: "no records" would sign human edits only."""
    shown = shown_layers(doc)
    present = []
    for record in provenance_records(doc):
        readable = isinstance(record, dict) and isinstance(record.get("provenance"), dict)
        if not readable or not isinstance(record.get("layer_uuid"), str):
            raise AvowKritaError("this document's Avow provenance annotation is damaged (a record without its layer); "
                                 "not exporting")
        if record["layer_uuid"] in shown:
            present.append(record)
    return present


def shown_layers(doc) -> set:
    """The unique ids of the layers in the document's tree that are visible with every group above
    them (a hidden layer is not in the exported pixels; an undone one is not in the tree)."""
    shown: set = set()
    pending = list(doc.rootNode().childNodes())
    while pending:
        node = pending.pop()
        if node.visible():
            shown.add(node.uniqueId().toString())
            pending.extend(node.childNodes())
    return shown


def _record(doc, record: dict) -> None:
    data = {"schema": 1, "records": provenance_records(doc) + [record]}
    payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
    doc.setAnnotation(ANNOTATION, ANNOTATION_DESCRIPTION, QByteArray(payload))


_ABSTRACT = re.compile(r"(<abstract>)(.*?)(</abstract>)", re.DOTALL)


def _note_in_document_info(doc, sentence: str) -> bool:
    """Add the disclosure sentence to File > Document Information's abstract (kept in .kra)."""
    info = doc.documentInfo()
    match = _ABSTRACT.search(info)
    if match is None or "]]>" in sentence:
        return False
    inner = match.group(2)
    cdata = re.fullmatch(r"\s*<!\[CDATA\[(.*)\]\]>\s*", inner, re.DOTALL)
    text = cdata.group(1) if cdata else inner
    if sentence in text:
        return True
    text = f"{text}\n{sentence}" if text.strip() else sentence
    doc.setDocumentInfo(info[: match.start(2)] + f"<![CDATA[{text}]]>" + info[match.end(2) :])
    return True


def disclosure_sentence(provenance: dict) -> str:
    return (
        f"AI-upscaled: pixels synthesized by the model {provenance['model_name']} at x{provenance['scale']} "
        f"with Avow {provenance.get('software_version', '')}; not original footage."
    ).replace("  ", " ")


# ---------------------------------------------------------------- upscale


def check_node(doc, node) -> pixels.Layout:
    if doc is None:
        raise AvowKritaError("no document is open")
    if node is None:
        raise AvowKritaError("no layer is selected; select the layer to upscale")
    if node.type() in MASK_TYPES:
        raise AvowKritaError(f"'{node.name()}' is a mask; select a layer to upscale")
    if node.animated():
        raise AvowKritaError(f"'{node.name()}' is animated; Avow upscales still layers only")
    try:
        return pixels.layout_for(node.colorModel(), node.colorDepth())
    except pixels.UnsupportedLayer as exc:
        raise AvowKritaError(str(exc)) from None


def check_settings(description: dict, settings: Settings) -> None:
    """The request against what the worker described, in the dialog's words, before any pixel moves."""
    models = {m.get("name"): m for m in description.get("models", []) if isinstance(m, dict)}
    if settings.device not in description.get("devices", [settings.device]):
        raise AvowKritaError(f"this computer has no {settings.device} device that Avow can use; choose Device: auto or cpu")
    model = settings.model
    if model is None or not models or model.endswith(".safetensors") or os.sep in model:
        return
    if model not in models:
        raise AvowKritaError(f"there is no model '{model}'. Installed models: {', '.join(sorted(models))}")
    if settings.scale is not None and int(models[model].get("scale") or settings.scale) != settings.scale:
        raise AvowKritaError(f"the model {model} upscales x{models[model]['scale']}, not x{settings.scale}")


def selection_region(doc) -> tuple:
    """The selection's bounding box on the canvas (Krita's filters work on the selection too), or the
    whole canvas when nothing is selected."""
    selection = doc.selection()
    if selection is None or selection.width() <= 0 or selection.height() <= 0:
        return 0, 0, doc.width(), doc.height()
    left, top = max(0, selection.x()), max(0, selection.y())
    right = min(doc.width(), selection.x() + selection.width())
    bottom = min(doc.height(), selection.y() + selection.height())
    if right <= left or bottom <= top:
        raise AvowKritaError("the selection lies outside the image; select part of it, or Select > Deselect")
    return left, top, right - left, bottom - top


def upscale_document(doc, node, settings: Settings, session: Session, progress: Progress | None = None) -> UpscaleOutcome:
    """Upscale ``node`` into a new layer above it; the document is only touched once the worker succeeded."""
    progress = progress or Progress()
    layout = check_node(doc, node)
    doc.waitForDone()  # let pending strokes (a just-opened image, a running filter) land first
    left, top, width, height = region = selection_region(doc)
    whole = region == (0, 0, doc.width(), doc.height())
    read = node.pixelData if node.type() == "paintlayer" else node.projectionPixelData
    raw = bytes(read(left, top, width, height))
    folder = Path(tempfile.mkdtemp(prefix="avow-krita-"))  # private (0700)
    try:
        source, target = folder / "layer.npy", folder / "upscaled.npy"

        def prepare() -> int:
            data, channels = pixels.to_native(raw, layout, width, height)
            client.write_npy(source, width, height, channels, data, layout.descr)
            return channels

        progress.status("Preparing the layer's pixels...")
        channels_sent = run_in_background(prepare)
        progress.status("Upscaling (the model invents plausible detail)...")
        result = session.request(
            "upscale",
            progress,
            input=str(source),
            output=str(target),
            model=settings.model,
            scale=settings.scale,
            tile=int(settings.tile),
            device=settings.device,
            dtype=layout.dtype,
        )
        provenance = result["provenance"]
        scale = int(provenance["scale"])
        progress.status("Reading the result...")

        def finish() -> tuple:
            out_width, out_height, out_channels, data = client.read_npy(target, layout.descr)
            if (out_width, out_height) != (width * scale, height * scale):
                raise AvowKritaError(
                    f"the worker returned {out_width}x{out_height}, expected {width * scale}x{height * scale}"
                )
            return out_width, out_height, pixels.from_native(data, out_channels, layout, out_width, out_height)

        out_width, out_height, out_bytes = run_in_background(finish)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    # Only now does the document change.
    progress.status("Adding the synthesized layer...")
    name = client.layer_name(provenance["scale"], node.name(), whole)
    doc.scaleImage(doc.width() * scale, doc.height() * scale, round(doc.xRes()), round(doc.yRes()), "Bicubic")
    doc.waitForDone()
    layer = doc.createNode(name, "paintlayer")
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (
        node.colorModel(),
        node.colorDepth(),
        node.colorProfile(),
    ):
        layer.setColorSpace(node.colorModel(), node.colorDepth(), node.colorProfile())
    parent = node.parentNode() or doc.rootNode()
    parent.addChildNode(layer, node)
    layer.setColorLabel(LAYER_COLOR_LABEL)
    layer.setPixelData(QByteArray(out_bytes), left * scale, top * scale, out_width, out_height)
    if channels_sent == layout.channels and whole:
        # Transparent pixels: the bicubic-scaled original would show through the new layer. Hide
        # it (Krita's API cannot make this undoable; opaque layers are covered and stay visible).
        node.setVisible(False)
    doc.setActiveNode(layer)
    uuid = layer.uniqueId().toString()
    _record(
        doc,
        {
            "layer_uuid": uuid,
            "layer_name": name,
            "source_layer": node.name(),
            "source_region": list(region),
            "document_size": [doc.width(), doc.height()],
            "provenance": provenance,
        },
    )
    _note_in_document_info(doc, disclosure_sentence(provenance))
    doc.refreshProjection()
    doc.waitForDone()
    doc.setModified(True)
    return UpscaleOutcome(name, uuid, (width, height), (doc.width(), doc.height()), channels_sent, provenance)


# ---------------------------------------------------------------- export


def _export_options(suffix: str) -> InfoObject:
    info = InfoObject()
    if suffix in (".jpg", ".jpeg"):
        info.setProperty("quality", 95)
    elif suffix == ".png":
        info.setProperty("alpha", True)
        info.setProperty("compression", 6)
    elif suffix == ".webp":
        info.setProperty("lossless", True)
    elif suffix in (".tif", ".tiff"):
        info.setProperty("alpha", True)  # Krita's TIFF export drops transparency unless told
    return info


def export_with_credentials(doc, path, session: Session, progress: Progress | None = None) -> dict:
    """Export the image, then have the worker write EXIF/XMP and sign C2PA; fail closed.

    The export goes to a private folder beside the target and only replaces the target once it
    is disclosed, signed and verified: no undisclosed file ever exists under the chosen name.
    """
    progress = progress or Progress()
    if doc is None:
        raise AvowKritaError("no document is open")
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise AvowKritaError(f"{target.name}: export to .jpg, .png, .webp or .tif (Content Credentials need one of those)")
    if not target.parent.is_dir():
        raise AvowKritaError(f"{target.parent}: no such folder")
    records = present_records(doc)
    # A private folder beside the target (same file system, so the final move is atomic), and the
    # file in it already has the target's name, which the signed manifest records as its title.
    folder = target.parent / f".avow-export-{secrets.token_hex(4)}"
    staged = folder / target.name
    batch = doc.batchmode()
    folder.mkdir(mode=0o700)
    try:
        progress.status(f"Exporting {target.name}...")
        doc.setBatchmode(True)  # no export options dialog
        try:
            doc.waitForDone()  # export fails (returns False) while the image is still busy, e.g. just opened
            exported = doc.exportImage(str(staged), _export_options(suffix))
            if not exported:
                doc.waitForDone()
                exported = doc.exportImage(str(staged), _export_options(suffix))
        finally:
            doc.setBatchmode(batch)
        if not exported or not staged.is_file() or staged.stat().st_size == 0:
            raise AvowKritaError(f"Krita could not export {target.name}")
        progress.status("Writing the disclosure and signing (Content Credentials)...")
        signed = session.request(
            "sign", progress, file=str(staged), provenance=[r["provenance"] for r in records], editor=editor_name()
        )
        report = session.request("verify", progress, file=str(staged))
        client.refuse_unclaimed_mark(report)
        os.replace(staged, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = dict(report, file=str(target))
    return {"file": str(target), "ai_declared": signed.get("ai_declared", bool(records)), "records": len(records),
            "verify": report}
