#!/usr/bin/env python3
"""Avow for GIMP 3: AI upscaling that says so, and export with Content Credentials.

Two procedures:

- ``python-fu-avow-upscale``, Filters > Enhance > AI Upscale (disclosed)...: upscales the selected
  layer with Avow's model and adds the result as a new layer named as synthesized (the canvas grows
  to fit), or opens it as a new image. The image is marked: a persistent parasite
  ``avow-provenance`` on the image (a JSON list of every upscale) and one on the synthesized layer,
  and GIMP's image metadata gets XMP ``Iptc4xmpExt:DigitalSourceType`` =
  compositeWithTrainedAlgorithmicMedia, so even GIMP's ordinary export declares it.
- ``python-fu-avow-export-signed``, File > Export with Content Credentials...: exports a merged
  copy of the image with GIMP's own exporter (JPEG, PNG, WebP or TIFF, by extension), then has
  Avow write the EXIF/XMP disclosure and sign a C2PA manifest listing the image's upscales (or, with
  none, one that claims only edits in GIMP). The file appears at its name only once signed.

GIMP's Python has neither torch nor numpy: the work happens in Avow's worker, started with the
Python that ``avow install gimp`` wrote into ``avow.json`` beside this file. GIMP runs each call in
a new process, so the worker is this GIMP session's warm one (``avow_warm``: the first run starts
it, later runs connect to it; it exits after ``[worker] idle_minutes`` unused or when GIMP quits).
Pixels travel as float32 .npy files in a private temp dir. Only gi and the standard library are
used here; ``avow_client.py`` and ``avow_warm.py`` are copied beside this file by ``avow install gimp``.
"""

import contextlib
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import avow_client
import avow_warm

UPSCALE = "python-fu-avow-upscale"
EXPORT = "python-fu-avow-export-signed"
PARASITE = "avow-provenance"
# Avow's own values, needed before (or without) a worker: at registration and before an export starts.
# The worker's `describe` says them too; tests/test_constants.py keeps these equal to the core's.
COMPOSITE_WITH_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
EXPORT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
DEFAULT_TILE = 256
LAYER_COLOR = Gimp.ColorTag.VIOLET  # the synthesized layer's colour tag in the Layers dock
UPSCALE_NOTE = (
    "The model invents plausible detail; it does not recover it. The new layer is named as AI-upscaled, its "
    "pixels carry Avow's invisible watermark, and the image is marked (parasite and XMP DigitalSourceType) so "
    "exports say so. File > Export with Content Credentials signs that declaration."
)
EXPORT_NOTE = (
    "Exports a merged copy (JPEG, PNG, WebP or TIFF, by extension) and signs it with C2PA Content Credentials, "
    "listing the AI upscales this image and its layers record, or only edits in GIMP when there are none. "
    "Pixels that carry Avow's mark are never signed as edits only."
)
STRIP_BYTES = 64 << 20  # pixels go back into GIMP in strips of at most this many bytes


def _choice(*entries):
    choice = Gimp.Choice.new()
    for number, (nick, label) in enumerate(entries):
        choice.add(nick, number, label, "")
    return choice


def _editor():
    return f"GIMP {Gimp.version()}"


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error(message))


def _worker_config():
    config = avow_client.load_config(HERE, editor="gimp")
    python = config["python"]
    if not os.path.isfile(python):
        raise avow_client.WorkerUnavailable(
            f"Avow's Python {python} (from {os.path.join(HERE, 'avow.json')}) does not exist. "
            "From Avow's environment, run: avow install gimp"
        )
    return config


def _start_worker(scratch=None):
    """This GIMP session's warm worker (avow_warm: GIMP is this process's parent), started if none runs."""
    started = time.monotonic()
    worker = avow_warm.open_worker(_worker_config(), avow_client.worker_env(), "gimp", os.getppid(), scratch)
    how = "own" if not isinstance(worker, avow_warm.WarmWorker) else "started" if worker.started else "warm"
    print(f"avow: worker {worker.ready.get('pid')} ({how}) answered in {time.monotonic() - started:.3f} s",
          file=sys.stderr, flush=True)
    return worker


def _prestart_worker():
    """Before a dialog: the worker loads while the user chooses (never an error here; the run reports its own)."""
    try:
        avow_warm.prestart(_worker_config(), avow_client.worker_env(), "gimp", os.getppid())
    except avow_client.WorkerError:
        pass


def _private_workdir():
    """A 0700 temp dir tagged with this process's id, which the worker removes when it ends: GIMP cancels
    a plug-in by killing it, which leaves it no chance to clean up. The dirs of plug-in runs that were
    killed before their worker took them are removed here."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        names = []
    for name in names:
        match = re.fullmatch(r"avow-gimp-(\d+)-[A-Za-z0-9_]+", name)
        path = os.path.join(base, name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
    return avow_client.scratch_dir(f"avow-gimp-{os.getpid()}-")


# --- pixels ------------------------------------------------------------------------------------


def _pixel_format(drawable):
    """Non-linear (perceptual) float, as Avow's models expect: 1 to 4 channels, alpha last."""
    gray = drawable.is_gray()
    alpha = drawable.has_alpha()
    if gray:
        return ("Y'A float", 2) if alpha else ("Y' float", 1)
    return ("R'G'B'A float", 4) if alpha else ("R'G'B' float", 3)


def _layer_type(channels):
    return {
        1: Gimp.ImageType.GRAY_IMAGE,
        2: Gimp.ImageType.GRAYA_IMAGE,
        3: Gimp.ImageType.RGB_IMAGE,
        4: Gimp.ImageType.RGBA_IMAGE,
    }[channels]


def _read_drawable(drawable, path, region):
    left, top, width, height = region
    fmt, channels = _pixel_format(drawable)
    buffer = drawable.get_buffer()
    data = buffer.get(Gegl.Rectangle.new(left, top, width, height), 1.0, fmt, Gegl.AbyssPolicy.CLAMP)
    avow_client.write_npy(path, width, height, channels, bytes(data))
    return width, height, channels


def _write_layer(layer, path, channels):
    """Copy the worker's .npy into the layer, in strips, so a big result is never held twice."""
    width, height = layer.get_width(), layer.get_height()
    fmt = {1: "Y' float", 2: "Y'A float", 3: "R'G'B' float", 4: "R'G'B'A float"}[channels]
    buffer = layer.get_buffer()
    row_bytes = width * channels * 4
    rows = max(1, STRIP_BYTES // row_bytes)
    with open(path, "rb") as handle:
        shape = avow_client.read_npy_header(handle, path)
        if tuple(shape) != (height, width, channels):
            raise ValueError(f"the worker's result is {shape}, expected {(height, width, channels)}")
        for top in range(0, height, rows):
            count = min(rows, height - top)
            data = handle.read(count * row_bytes)
            if len(data) != count * row_bytes:
                raise ValueError(f"{path}: truncated pixel data")
            buffer.set(Gegl.Rectangle.new(0, top, width, count), fmt, data)
    buffer.flush()
    layer.update(0, 0, width, height)


# --- provenance marks ----------------------------------------------------------------------------


class DamagedRecord(Exception):
    """An ``avow-provenance`` parasite that cannot be read: exporting would claim no AI, so nothing is."""


def _parasite_records(owner, where):
    parasite = owner.get_parasite(PARASITE)
    if parasite is None:
        return []
    try:
        records = json.loads(bytes(parasite.get_data()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        records = None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("provenance"), dict) for r in records):
        raise DamagedRecord(
            f"the record of AI upscaling on {where} (parasite '{PARASITE}') is damaged, so it cannot be declared. "
            "Nothing was written. Remove the parasite only if that content is not AI-upscaled."
        )
    return records


def image_records(image):
    """The image's list of upscale records (its ``avow-provenance`` parasite), [] if none."""
    return _parasite_records(image, "this image")


def _all_layers(layers):
    for layer in layers:
        yield layer
        if layer.is_group():
            yield from _all_layers(layer.get_children())


def export_records(image):
    """What an export declares: the image's records and those its layers carry (a synthesized layer
    dragged, duplicated or pasted from another image brings its own), each once."""
    records, seen = [], set()
    sources = [(image, "this image")] + [(layer, f"the layer '{layer.get_name()}'") for layer in _all_layers(image.get_layers())]
    for owner, where in sources:
        for record in _parasite_records(owner, where):
            key = json.dumps(record, sort_keys=True)
            if key not in seen:
                seen.add(key)
                records.append(record)
    return records


def _attach(owner, value):
    data = json.dumps(value, ensure_ascii=True, sort_keys=True).encode("utf-8")
    flags = Gimp.PARASITE_PERSISTENT | Gimp.PARASITE_UNDOABLE
    owner.attach_parasite(Gimp.Parasite.new(PARASITE, flags, list(data)))


def _set_xmp_disclosure(image, record):
    """GIMP's image metadata, so GIMP's own exporters write the XMP disclosure too."""
    metadata = image.get_metadata() or Gimp.Metadata.new()
    provenance = record["provenance"]
    tags = {
        "Xmp.iptcExt.DigitalSourceType": provenance.get("digital_source_type") or COMPOSITE_WITH_AI,
        "Xmp.iptcExt.AISystemUsed": f"Avow {provenance.get('software_version', '')} ({record['model']})".strip(),
    }
    try:  # Gimp.Metadata is a GExiv2.Metadata underneath, when GExiv2's typelib is installed
        gi.require_version("GExiv2", "0.10")
        from gi.repository import GExiv2

        for tag, value in tags.items():
            GExiv2.Metadata.try_set_tag_string(metadata, tag, value)
    except (ImportError, ValueError, TypeError, GLib.Error):
        metadata = _metadata_with_tags(metadata, tags)
    image.set_metadata(metadata)


def _metadata_with_tags(metadata, tags):
    """Fallback without GExiv2's typelib: through GIMP's own metadata serialization."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(metadata.serialize())
    for element in list(root):
        if element.get("name") in tags:
            root.remove(element)
    for tag, value in tags.items():
        element = ET.SubElement(root, "tag", name=tag)
        element.text = value
    return Gimp.Metadata.deserialize(ET.tostring(root, encoding="unicode"))


# --- upscale -------------------------------------------------------------------------------------

UPSCALE_FIELDS = ["model-choice", "scale", "device", "tile", "output"]
DESCRIBE_CACHE = "avow-describe.json"  # the worker's last `describe`, so the dialog lists models at once


def _cache_path():
    return os.path.join(Gimp.directory(), DESCRIBE_CACHE)


def _cached_description():
    try:
        with open(_cache_path(), encoding="utf-8") as handle:
            description = json.load(handle)
    except (OSError, ValueError):
        return {}
    return description if isinstance(description, dict) else {}


def _save_description(description):
    path = _cache_path()
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump({k: description.get(k) for k in ("version", "models", "devices")}, handle)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the list is a convenience; the worker checks every request anyway


def _models(description):
    models = description.get("models")
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)] if isinstance(models, list) else []


def _model_names(description):
    """Dialog choice nick -> model name ('auto': Avow's default for the scale)."""
    names = {"auto": ""}
    for model in _models(description):
        names[re.sub(r"[^a-z0-9-]+", "-", model["name"].lower())] = model["name"]
    return names


def _model_choice(description):
    entries = [("auto", "Default for the scale")]
    for nick, name in list(_model_names(description).items())[1:]:
        model = next(m for m in _models(description) if m["name"] == name)
        entries.append((nick, f"{name} (x{model.get('scale')}, {model.get('origin', '')})"))
    return _choice(*entries)


def _devices(description):
    """The devices Avow's worker last reported ('auto' first), or 'auto' and 'cpu' before any has described itself."""
    devices = description.get("devices")
    if not isinstance(devices, list):
        devices = []
    reported = [d for d in devices if isinstance(d, str) and re.fullmatch(r"[a-z0-9:_-]{1,32}", d) and d != "auto"]
    return ["auto"] + (reported or ["cpu"])


def _device_choice(description):
    devices = _devices(description)
    labels = {"auto": "Auto (CUDA if available)" if "cuda" in devices else "Auto", "cpu": "CPU", "cuda": "CUDA"}
    return _choice(*[(device, labels.get(device, device)) for device in devices])


def _check_request(description, model, scale, device):
    """What is wrong with the request, in the dialog's words, or None; unknown until a worker has described itself."""
    models = {m["name"]: m for m in _models(description)}
    if isinstance(description.get("devices"), list) and device not in _devices(description):
        what = "CUDA GPU" if device == "cuda" else f"device \u201c{device}\u201d"
        return f"this computer has no {what} that Avow can use; choose Device: Auto or CPU."
    if model is None or not models or model.endswith(".safetensors") or os.sep in model:
        return None
    if model not in models:
        return f"there is no model \u201c{model}\u201d. Installed models: {', '.join(sorted(models))} (or Default for the scale)."
    if int(models[model].get("scale") or scale) != scale:
        return (
            f"the model {model} upscales x{models[model]['scale']}, not x{scale}: choose Scale x{models[model]['scale']}, "
            "or Default for the scale."
        )
    return None



def _dialog(procedure, config, title, role, note, names):
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(role)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    try:
        label = dialog.get_label("avow-note", note, False, False)
        label.set_line_wrap(True)
        label.set_max_width_chars(48)
        label.set_xalign(0.0)
        dialog.fill(names + ["avow-note"])
    except (AttributeError, TypeError):  # a GimpUi without get_label: the arguments alone
        dialog.fill(None)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def run_upscale(procedure, run_mode, image, drawables, config, data):
    title = "AI Upscale (disclosed)"
    if run_mode == Gimp.RunMode.INTERACTIVE:
        _prestart_worker()
    if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog(procedure, config, title, UPSCALE, UPSCALE_NOTE, UPSCALE_FIELDS):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    if len(drawables) != 1:
        return _error(procedure, "AI Upscale works on one layer: select exactly one.", Gimp.PDBStatusType.CALLING_ERROR)
    drawable = drawables[0]
    if not isinstance(drawable, Gimp.Layer) or drawable.is_group():
        return _error(procedure, "AI Upscale works on a pixel layer (not a mask, channel or group).",
                      Gimp.PDBStatusType.CALLING_ERROR)
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        return _error(procedure, "AI Upscale needs an RGB or grayscale image (Image > Mode).", Gimp.PDBStatusType.CALLING_ERROR)

    try:
        image_records(image)  # a damaged record would fail the upscale at its end: say so before the heavy work
    except DamagedRecord as exc:
        return _error(procedure, f"Avow: not upscaled: {exc}")

    # The dialog shows the list of installed models; scripts may name any model, or a path, in 'model'.
    cached = _cached_description()
    model = (config.get_property("model") or "").strip() if run_mode == Gimp.RunMode.NONINTERACTIVE else ""
    if model.lower() in ("", "auto", "default"):
        model = _model_names(cached).get(config.get_property("model-choice"), "")
    model = None if model.lower() in ("", "auto", "default") else model
    scale = int(config.get_property("scale").lstrip("x"))
    device = config.get_property("device")
    tile = int(config.get_property("tile"))
    output = config.get_property("output")
    problem = _check_request(cached, model, scale, device)  # before the worker's ~20 s start
    if problem:
        return _error(procedure, f"Avow: {problem}", Gimp.PDBStatusType.CALLING_ERROR)

    # With a selection, its bounding box on the layer is upscaled (as GIMP's filters work on the selection).
    touches, *region = drawable.mask_intersect()
    if not touches:
        message = "Avow: the selection does not touch this layer; select part of it, or Select > None."
        return _error(procedure, message, Gimp.PDBStatusType.CALLING_ERROR)
    whole = region == [0, 0, drawable.get_width(), drawable.get_height()]

    workdir = _private_workdir()
    worker = None
    Gimp.progress_init(f"AI upscaling x{scale} (Avow)")
    try:
        source = os.path.join(workdir, "in.npy")
        target = os.path.join(workdir, "out.npy")
        # The worker takes workdir first thing: it removes it when this run's connection ends, even when GIMP kills
        # this plug-in (Cancel), and stays warm for the next run.
        worker = _start_worker(workdir)
        width, height, channels = _read_drawable(drawable, source, region)
        description = worker.request("describe")
        _save_description(description)
        problem = _check_request(description, model, scale, device)  # before the model runs
        if problem:
            raise avow_client.WorkerError("UsageError", problem)
        result = worker.request(
            "upscale",
            on_progress=lambda done, total: Gimp.progress_update(done / total if total else 0.0),
            input=source,
            output=target,
            model=model,
            scale=scale,
            tile=tile,
            device=device,
        )
        provenance = result["provenance"]
        scale = int(provenance.get("scale") or scale)
        out_w, out_h, out_c = int(result["width"]), int(result["height"]), int(result["channels"])
        if (out_w, out_h, out_c) != (width * scale, height * scale, channels):
            raise ValueError(f"the worker returned {out_w}x{out_h}x{out_c}, expected {width * scale}x{height * scale}x{channels}")
        name = avow_client.layer_name(scale, drawable.get_name(), whole)
        record = {
            "layer": name,
            "model": provenance.get("model_name"),
            "sha256": provenance.get("model_sha256"),
            "scale": scale,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - GIMP may bundle Python < 3.11
            "output": output,
            "source_layer": drawable.get_name(),
            "source_region": region,
            "provenance": provenance,
        }
        if output == "image":
            target_image, layer = _new_image(
                image, drawable, name, out_w, out_h, out_c, target, record, run_mode == Gimp.RunMode.INTERACTIVE
            )
        else:
            target_image, layer = image, _new_layer(image, drawable, region, name, scale, out_w, out_h, out_c, target, record)
    except avow_client.WorkerError as exc:
        return _error(procedure, f"Avow: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - never crash GIMP's call; the image is unchanged at this point
        traceback.print_exc()
        return _error(procedure, f"Avow: upscaling failed: {exc}")
    finally:
        Gimp.progress_end()
        if worker is not None:
            worker.close()  # only now that the result is in a layer: the worker removes workdir as it ends
        shutil.rmtree(workdir, ignore_errors=True)
    Gimp.displays_flush()
    _tell(
        run_mode,
        f"Avow: new layer \u201c{layer.get_name()}\u201d ({out_w}x{out_h}). Its pixels are synthesized by the model "
        f"{provenance.get('model_name')}; File > Export with Content Credentials keeps that declared.",
    )
    return Gimp.ValueArray.new_from_values(
        [
            GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
            GObject.Value(Gimp.Image, target_image),
            GObject.Value(Gimp.Layer, layer),
        ]
    )


def _new_layer(image, drawable, region, name, scale, width, height, channels, pixels, record):
    """One undo step: the canvas grows, the synthesized layer goes above its source (over the region
    it came from), marks attached."""
    layer = Gimp.Layer.new(image, name, width, height, _layer_type(channels), 100.0, Gimp.LayerMode.NORMAL)
    try:
        _write_layer(layer, pixels, channels)  # before the layer joins the image: nothing to undo on failure
    except Exception:
        layer.delete()
        raise
    _, x, y = drawable.get_offsets()
    x, y = x + region[0], y + region[1]
    size = image.get_width(), image.get_height()
    parasite, metadata = image.get_parasite(PARASITE), image.get_metadata()
    inserted = False
    image.undo_group_start()
    try:
        image.resize(max(size[0] * scale, x * scale + width), max(size[1] * scale, y * scale + height), 0, 0)
        image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        inserted = True
        layer.set_offsets(x * scale, y * scale)
        _mark(image, layer, record)
        image.set_selected_layers([layer])
    except Exception:
        _roll_back(image, layer, inserted, size, parasite, metadata)
        raise
    finally:
        image.undo_group_end()
    return layer


def _roll_back(image, layer, inserted, size, parasite, metadata):
    """Best effort: put the image back as it was, so a failure never leaves it half-changed."""
    try:
        if inserted:
            image.remove_layer(layer)
        else:
            layer.delete()
        image.resize(size[0], size[1], 0, 0)
        if parasite is not None:
            image.attach_parasite(parasite)
        else:
            image.detach_parasite(PARASITE)
        if metadata is not None:
            image.set_metadata(metadata)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        traceback.print_exc()


def _new_image(image, drawable, name, width, height, channels, pixels, record, show):
    base = Gimp.ImageBaseType.GRAY if channels in (1, 2) else Gimp.ImageBaseType.RGB
    new = Gimp.Image.new_with_precision(width, height, base, image.get_precision())
    try:
        new.undo_disable()
        profile = image.get_color_profile()
        if profile is not None:
            new.set_color_profile(profile)
        layer = Gimp.Layer.new(new, name, width, height, _layer_type(channels), 100.0, Gimp.LayerMode.NORMAL)
        new.insert_layer(layer, None, 0)
        _write_layer(layer, pixels, channels)
        _mark(new, layer, record)
        new.undo_enable()
    except Exception:
        new.delete()
        raise
    if show:
        Gimp.Display.new(new)
    return new, layer


def _mark(image, layer, record):
    layer.set_color_tag(LAYER_COLOR)
    _attach(image, image_records(image) + [record])
    _attach(layer, record)
    _set_xmp_disclosure(image, record)


# --- export with Content Credentials ------------------------------------------------------------

EXPORTERS = {
    ".jpg": "file-jpeg-export",
    ".jpeg": "file-jpeg-export",
    ".png": "file-png-export",
    ".webp": "file-webp-export",
    ".tif": "file-tiff-export",
    ".tiff": "file-tiff-export",
}


def _gimp_export(image, path, suffix, run_mode):
    """GIMP's own exporter for the format, with the image's metadata (EXIF/XMP/IPTC as in GIMP's
    preferences), so the XMP disclosure set at upscale time and the user's own metadata go along.
    Interactive: the format's usual options dialog. Returns (status, error message)."""
    exporter = Gimp.get_pdb().lookup_procedure(EXPORTERS[suffix])
    if exporter is None:
        return Gimp.PDBStatusType.EXECUTION_ERROR, f"{EXPORTERS[suffix]} is not installed"
    config = exporter.create_config()
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_property("file", Gio.File.new_for_path(path))
    wanted = {"include-exif": Gimp.export_exif(), "include-xmp": Gimp.export_xmp(), "include-iptc": Gimp.export_iptc()}
    names = {spec.name for spec in exporter.get_arguments()}
    for name, value in wanted.items():
        if name in names:
            config.set_property(name, bool(value))
    result = exporter.run(config)
    status = result.index(0)
    message = None
    if status != Gimp.PDBStatusType.SUCCESS:
        message = (result.index(1) if result.length() > 1 else None) or Gimp.get_pdb().get_last_error()
    return status, message



def _has_display():
    """Whether a dialog can be shown (not so in gimp-console or a batch job on a headless machine)."""
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _confirm_replace(path):
    """As GIMP's Export As asks: an existing file is replaced only when the user says so."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION,
        buttons=Gtk.ButtonsType.NONE,
        text=f"A file named \u201c{os.path.basename(path)}\u201d already exists. Replace it?",
        title="Replace the existing file?",
    )
    dialog.format_secondary_text(f"It is in {os.path.dirname(path)}. Replacing it overwrites its contents.")
    dialog.add_buttons("_Cancel", Gtk.ResponseType.CANCEL, "_Replace", Gtk.ResponseType.ACCEPT)
    dialog.set_default_response(Gtk.ResponseType.CANCEL)
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.ACCEPT


def _cancelled(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def run_export(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.WITH_LAST_VALS:
        # Filters > Repeat (Ctrl+F) runs the last procedure with its last values and no dialog. For an
        # export that would overwrite the last file unasked: show the dialog instead (as Re-show does),
        # or refuse where no dialog can be shown.
        if not _has_display():
            return _error(
                procedure,
                "Avow: Export with Content Credentials asks where to export every time; repeating it with the last "
                "values would overwrite the last exported file unasked. Use File > Export with Content Credentials...",
                Gimp.PDBStatusType.CALLING_ERROR,
            )
        run_mode = Gimp.RunMode.INTERACTIVE
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive:
        _prestart_worker()
    if interactive and not _dialog(procedure, config, "Export with Content Credentials", EXPORT, EXPORT_NOTE, ["file"]):
        return _cancelled(procedure)
    file = config.get_property("file")
    path = file.get_path() if file is not None else None
    if not path:
        return _error(procedure, "Avow: choose the file to export to.", Gimp.PDBStatusType.CALLING_ERROR)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in EXPORT_SUFFIXES:
        return _error(
            procedure,
            f"Avow: Export with Content Credentials writes JPEG, PNG, WebP or TIFF ({', '.join(EXPORT_SUFFIXES)}), "
            f"not {suffix or 'no extension'}",
            Gimp.PDBStatusType.CALLING_ERROR,
        )
    try:
        records = export_records(image)
    except DamagedRecord as exc:
        return _error(procedure, f"Avow: not exported: {exc}")
    if interactive and os.path.exists(path) and not _confirm_replace(path):
        return _cancelled(procedure)
    provenance = [r["provenance"] for r in records]
    folder = os.path.dirname(os.path.abspath(path))
    # Exported and signed beside the target (same file system), under the target's own name (the
    # manifest's title), then moved into place: an unsigned file never has the target's name.
    try:
        stage_dir = tempfile.mkdtemp(prefix=".avow-export-", dir=folder)
    except OSError as exc:
        return _error(procedure, f"Avow: cannot write in {folder}: {exc}")
    staged = os.path.join(stage_dir, os.path.basename(path))
    name = os.path.basename(path)
    Gimp.progress_init(f"Exporting {name} with Content Credentials (Avow)")
    try:
        copy = image.duplicate()
        try:
            copy.undo_disable()
            if suffix in (".jpg", ".jpeg"):
                copy.flatten()
            else:
                copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
            status, message = _gimp_export(copy, staged, suffix, run_mode)
        finally:
            copy.delete()
        if status == Gimp.PDBStatusType.CANCEL:
            return _cancelled(procedure)
        if status != Gimp.PDBStatusType.SUCCESS:
            return _error(procedure, f"Avow: GIMP's exporter failed: {message}")
        Gimp.progress_set_text(f"Starting Avow to sign {name}...")
        Gimp.progress_update(0.25)
        with contextlib.closing(_start_worker()) as worker:
            Gimp.progress_set_text(f"Writing the disclosure and signing {name}...")
            Gimp.progress_update(0.5)
            signed = worker.request("sign", file=staged, provenance=provenance, editor=_editor())
            Gimp.progress_set_text(f"Checking the signed {name}...")
            Gimp.progress_update(0.8)
            report = worker.request("verify", file=staged)
        avow_client.refuse_unclaimed_mark(report)
        os.replace(staged, path)
        Gimp.progress_update(1.0)
    except avow_client.WorkerError as exc:
        return _error(procedure, f"Avow: not exported: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - never crash GIMP's call; nothing was written at the target
        traceback.print_exc()
        return _error(procedure, f"Avow: export failed, nothing was written: {exc}")
    finally:
        Gimp.progress_end()
        shutil.rmtree(stage_dir, ignore_errors=True)
    declared = "AI upscaling" if signed.get("ai_declared") else "edits in GIMP only (no AI upscale in this image)"
    verdict = report.get("summary", report.get("verdict"))
    _tell(run_mode, f"Avow: exported {path} with Content Credentials; it declares {declared}. Verify: {verdict}")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _tell(run_mode, message):
    """A message when the job is done, for a person at the screen (scripts get the return values)."""
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(message)
    else:
        print(message, flush=True)


# --- registration --------------------------------------------------------------------------------


class AvowUpscale(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [UPSCALE, EXPORT]

    def do_create_procedure(self, name):
        if name == UPSCALE:
            return self._upscale_procedure(name)
        if name == EXPORT:
            return self._export_procedure(name)
        return None

    def _upscale_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_upscale, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("AI Upscale (disclosed)...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Upscale a layer with an AI model; the result says it is synthesized",
            "Upscales the selected layer with Avow's super-resolution model (in Avow's worker process) and adds "
            "the result as a new layer named as AI-upscaled (the canvas grows by the scale), or as a new image; "
            "with a selection, only the selection's bounding box on the layer is upscaled, into a layer over that area. "
            "The pixels are invented by the model, not recovered: they carry Avow's invisible watermark (which "
            "'avow verify' finds even after the metadata is stripped), the image is marked with an 'avow-provenance' "
            "parasite and XMP DigitalSourceType compositeWithTrainedAlgorithmicMedia, and "
            "File > Export with Content Credentials signs that declaration into the exported file. "
            "Returns the image holding the result and the new layer.",
            name,
        )
        procedure.set_attribution("Avow", "Avow contributors", "2025")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_string_argument(
            "model", "_Model", "Built-in or user model name, or a .safetensors path; 'auto': Avow's default for the scale",
            "auto", flags
        )
        # A plain argument: GIMP 3.0.4's Python crashes on an aux choice argument.
        cached = _cached_description()
        models = _model_choice(cached)
        procedure.add_choice_argument(
            "model-choice", "_Model", "The dialog's list of installed models (as Avow's worker last described them); "
            "scripts may pass 'model' instead", models, "auto", flags
        )
        procedure.add_choice_argument("scale", "Sc_ale", "Upscaling factor", _choice(("x2", "x2"), ("x4", "x4")), "x4", flags)
        procedure.add_choice_argument(
            "device", "_Device", "Where the model runs: the devices Avow's worker last reported",
            _device_choice(cached), "auto", flags
        )
        procedure.add_int_argument(
            "tile", "_Tile size", "Tile size in input pixels (0: whole layer at once)", 0, 4096, DEFAULT_TILE, flags
        )
        procedure.add_choice_argument(
            "output",
            "Out_put",
            "Where the result goes",
            _choice(("layer", "New layer in this image (canvas resized)"), ("image", "New image")),
            "layer",
            flags,
        )
        procedure.add_image_return_value("result-image", "Result image", "The image holding the upscaled layer", False, flags)
        procedure.add_layer_return_value("result-layer", "Result layer", "The synthesized layer", False, flags)
        return procedure

    def _export_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_export, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        procedure.set_menu_label("Export with Content Credentials...")
        procedure.add_menu_path("<Image>/File/[Export]")
        procedure.set_documentation(
            "Export a copy and sign it with C2PA Content Credentials",
            "Exports a merged copy of the image with GIMP's exporter for the file's extension (JPEG, PNG, WebP, "
            "TIFF), then Avow writes the EXIF/XMP disclosure and a signed C2PA manifest: it lists the image's "
            "AI upscales (from its 'avow-provenance' parasite), or claims only edits in GIMP when there are none. "
            "The file appears under its name only once signed.",
            name,
        )
        procedure.set_attribution("Avow", "Avow contributors", "2025")
        procedure.add_file_argument(
            "file", "_File", f"Where to export ({' '.join(EXPORT_SUFFIXES)})", Gimp.FileChooserAction.SAVE, False, None,
            GObject.ParamFlags.READWRITE
        )
        return procedure


Gimp.main(AvowUpscale.__gtype__, sys.argv)
