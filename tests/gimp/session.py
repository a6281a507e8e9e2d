"""Runs inside headless GIMP 3 (python-fu-eval) for tests/test_gimp.py: drives Avow's plug-in through
the PDB exactly as a script would, and writes what it saw to a JSON report.

    gimp-console-3.0 -i --batch-interpreter=python-fu-eval \
        -b "exec(open('tests/gimp/session.py').read(), {'__name__': 'avow_gimp'})" --quit

The task comes from the JSON file named by $AVOW_GIMP_TASK: {"phase": "upscale"|"reopen", "report":
path, ...paths}. Every step is printed as a transcript line and recorded in the report, which is
rewritten after each step so a crash still leaves what happened before it.
"""

import json
import os
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio

UPSCALE = "python-fu-avow-upscale"
EXPORT = "python-fu-avow-export-signed"
PARASITE = "avow-provenance"

with open(os.environ["AVOW_GIMP_TASK"], encoding="utf-8") as _handle:
    task = json.load(_handle)
report = {"phase": task["phase"], "gimp_version": Gimp.version(), "steps": {}}


def save_report():
    with open(task["report"] + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, sort_keys=True)
    os.replace(task["report"] + ".tmp", task["report"])


def say(message):
    print(f"[gimp] {message}", flush=True)


def pdb_run(name, **arguments):
    """Run a PDB procedure non-interactively: (status name, return values, error message)."""
    return pdb_run_mode(Gimp.RunMode.NONINTERACTIVE, name, **arguments)


def pdb_run_mode(run_mode, name, **arguments):
    procedure = Gimp.get_pdb().lookup_procedure(name)
    if procedure is None:
        raise LookupError(f"{name} is not in the PDB")
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    for key, value in arguments.items():
        key = key.replace("_", "-")
        if isinstance(value, list):
            config.set_core_object_array(key, value)
        else:
            config.set_property(key, value)
    result = procedure.run(config)
    status = result.index(0)
    values = [result.index(i) for i in range(1, result.length())]
    error = None
    if status != Gimp.PDBStatusType.SUCCESS:
        error = values[0] if values and isinstance(values[0], str) else Gimp.get_pdb().get_last_error()
    return status.value_nick, values, error


def parasite_json(owner):
    parasite = owner.get_parasite(PARASITE)
    if parasite is None:
        return None
    return json.loads(bytes(parasite.get_data()).decode("utf-8"))


def xmp_source_type(image):
    metadata = image.get_metadata()
    if metadata is None:
        return None
    import xml.etree.ElementTree as ET

    for element in ET.fromstring(metadata.serialize()):
        if element.get("name") == "Xmp.iptcExt.DigitalSourceType":
            return element.text
    return None


def pixels_sha256(layer):
    import hashlib

    width, height = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "R'G'B'A float", Gegl.AbyssPolicy.CLAMP)
    return hashlib.sha256(bytes(data)).hexdigest()


def describe(image):
    layers = image.get_layers()
    return {
        "width": image.get_width(),
        "height": image.get_height(),
        "layers": [
            {
                "name": layer.get_name(),
                "width": layer.get_width(),
                "height": layer.get_height(),
                "offsets": list(layer.get_offsets()[1:]),
                "parasite": parasite_json(layer),
                "color_tag": layer.get_color_tag().value_nick,
                "pixels_sha256": pixels_sha256(layer),
            }
            for layer in layers
        ],
        "parasite": parasite_json(image),
        "xmp_digital_source_type": xmp_source_type(image),
    }


def dump_pixels(layer, path):
    """The layer's pixels as raw float32 R'G'B'A (what the test compares with Avow's own output)."""
    width, height = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "R'G'B'A float", Gegl.AbyssPolicy.CLAMP)
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    return {"path": path, "width": width, "height": height, "channels": 4}


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def step(name):
    def wrap(function):
        def run():
            try:
                report["steps"][name] = function()
            except Exception:  # noqa: BLE001 - recorded in the report, the test fails on it
                report["steps"][name] = {"exception": traceback.format_exc()}
                say(f"{name}: EXCEPTION\n{traceback.format_exc()}")
            save_report()

        return run

    return wrap


# --- phase "upscale": first GIMP session ---------------------------------------------------------


@step("registration")
def registration():
    found = {}
    for name in (UPSCALE, EXPORT):
        procedure = Gimp.get_pdb().lookup_procedure(name)
        if procedure is None:
            say(f"procedure {name}: NOT FOUND")
            found[name] = None
            continue
        found[name] = {
            "menu_paths": list(procedure.get_menu_paths()),
            "menu_label": procedure.get_menu_label(),
            "arguments": [spec.name for spec in procedure.get_arguments()],
            "image_types": procedure.get_image_types(),
        }
        if name == UPSCALE:  # the Device list the dialog offers, as registered when GIMP queried the plug-in
            spec = next(spec for spec in procedure.get_arguments() if spec.name == "device")
            found[name]["devices"] = list(Gimp.param_spec_choice_get_choice(spec).list_nicks())
        say(f"procedure {name}: found, menu {found[name]['menu_paths']} '{found[name]['menu_label']}', "
            f"arguments {found[name]['arguments']}")
    return found


@step("upscale_layer")
def upscale_layer():
    image = load(task["input"])
    before = describe(image)
    source = image.get_layers()[0]
    status, values, error = pdb_run(
        UPSCALE, image=image, drawables=[source], model="", scale="x4", device="cpu", tile=256, output="layer"
    )
    say(f"upscale x4 (new layer): status {status} {error or ''}")
    result = {"status": status, "error": error, "before": before}
    if status == "success":
        result_image, layer = values[0], values[1]
        result["same_image"] = result_image.get_id() == image.get_id()
        result["after"] = describe(image)
        result["layer_name"] = layer.get_name()
        result["pixels"] = dump_pixels(layer, task["pixels"])
        say(f"image {before['width']}x{before['height']} -> {image.get_width()}x{image.get_height()}, "
            f"layers {[layer['name'] for layer in result['after']['layers']]}")
        say(f"image parasite {PARASITE}: {len(result['after']['parasite'] or [])} record(s); "
            f"XMP DigitalSourceType in GIMP's metadata: {result['after']['xmp_digital_source_type']}")
        # GIMP's own export (not Avow's): the image metadata carries the XMP disclosure.
        # As File > Export As does with GIMP's default preferences (metadata included).
        status, _, error = pdb_run(
            "file-png-export", image=image, file=Gio.File.new_for_path(task["plain_png"]), include_xmp=Gimp.export_xmp()
        )
        result["plain_export"] = status
        say(f"plain GIMP export (file-png-export, include-xmp={Gimp.export_xmp()}) to {task['plain_png']}: "
            f"{status} {error or ''}")
        saved = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(task["xcf"]), None)
        result["xcf_saved"] = bool(saved)
        say(f"XCF saved to {task['xcf']}: {bool(saved)}")
    image.delete()
    return result


@step("upscale_new_image")
def upscale_new_image():
    image = load(task["input"])
    source = image.get_layers()[0]
    status, values, error = pdb_run(
        UPSCALE, image=image, drawables=[source], model="auto", scale="x2", device="cpu", tile=64, output="image"
    )
    say(f"upscale x2 (new image): status {status} {error or ''}")
    result = {"status": status, "error": error, "source_after": describe(image)}
    if status == "success":
        new = values[0]
        result["new_image"] = describe(new)
        result["distinct"] = new.get_id() != image.get_id()
        say(f"new image {new.get_width()}x{new.get_height()}, "
            f"layers {[layer['name'] for layer in result['new_image']['layers']]}; "
            f"source image still {image.get_width()}x{image.get_height()} with {len(image.get_layers())} layer(s)")
        new.delete()
    image.delete()
    return result


@step("upscale_gray_alpha")
def upscale_gray_alpha():
    """A grayscale image with transparency: two channels in, two out, alpha upscaled too."""
    image = load(task["gray_input"])
    source = image.get_layers()[0]
    status, values, error = pdb_run(
        UPSCALE, image=image, drawables=[source], model="avow-compact-x2", scale="x2", device="cpu", tile=0, output="layer"
    )
    result = {"status": status, "error": error, "base_type": image.get_base_type().value_nick}
    if status == "success":
        layer = values[1]
        width, height = layer.get_width(), layer.get_height()
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "Y'A float", Gegl.AbyssPolicy.CLAMP)
        with open(task["gray_pixels"], "wb") as handle:
            handle.write(bytes(data))
        result.update(after=describe(image), pixels={"path": task["gray_pixels"], "width": width, "height": height})
        say(f"upscale x2 of a {result['base_type']} image with alpha: status {status}, layer {layer.get_name()} "
            f"{width}x{height}, has alpha {layer.has_alpha()}, gray {layer.is_gray()}")
    else:
        say(f"upscale x2 of a gray+alpha image: status {status} {error}")
    image.delete()
    return result


@step("upscale_selection")
def upscale_selection():
    """A selection: its bounding box is upscaled, into a layer over that area (x scale)."""
    image = load(task["input"])
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 6, 24, 16)
    status, values, error = pdb_run(
        UPSCALE, image=image, drawables=[image.get_layers()[0]], model="", scale="x2", device="cpu", tile=256, output="layer"
    )
    result = {"status": status, "error": error}
    if status == "success":
        result["after"] = describe(image)
        result["record"] = parasite_json(values[1])
        say(f"upscale x2 of a 24x16 selection at (8, 6): image {image.get_width()}x{image.get_height()}, layers "
            f"{[(layer['name'], layer['width'], layer['height'], layer['offsets']) for layer in result['after']['layers']]}")
    image.delete()
    return result


CANCEL_WATCHER = r"""
import glob, os, signal, sys, tempfile, time

def processes():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read().split(b"\0")
                with open(f"/proc/{pid}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            yield int(pid), ppid, cmdline

def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

# Only this GIMP's upscale plug-in and its session's warm worker: other jobs on the machine run their own.
gimp = int(sys.argv[1])
deadline = time.monotonic() + 600
worker = plugin = None
while time.monotonic() < deadline and (worker is None or plugin is None):
    for pid, ppid, cmdline in processes():
        if ppid == gimp and any(part.endswith(b"avow-upscale.py") for part in cmdline):
            plugin = pid
        if b"avow.warm" in cmdline and str(gimp).encode() in cmdline:
            worker = pid
    time.sleep(0.1)
if worker is None or plugin is None:
    print(f"no plug-in ({plugin}) or warm worker ({worker}) appeared"); sys.exit(3)
# Wait until the worker is upscaling this plug-in's input (it maps its in.npy), then cancel as GIMP does:
# SIGKILL the plug-in. Its connection closes; the worker must stop the job, remove the plug-in's temp
# folder, and stay warm for the next run.
workdir = os.path.join(tempfile.gettempdir(), f"avow-gimp-{plugin}-")
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{worker}/maps") as handle:
            if any(workdir in line and line.rstrip().endswith("in.npy") for line in handle):
                break
    except OSError:
        print("the worker ended before it was cancelled"); sys.exit(4)
    time.sleep(0.05)
time.sleep(1.0)
os.kill(plugin, signal.SIGKILL)
killed = time.monotonic()
while time.monotonic() - killed < 60 and glob.glob(workdir + "*"):
    time.sleep(0.1)
removed = not glob.glob(workdir + "*")
alive = running(worker)
print(f"killed plug-in {plugin} while the warm worker {worker} was upscaling; its temp folder removed "
      f"{time.monotonic() - killed:.1f}s later: {removed}; worker {worker} still running: {alive}")
sys.exit(0 if removed and alive else 5)
"""


def cancel_upscale(image):
    """Runs the upscale and cancels it as GIMP's Cancel does, killing the plug-in: (status, watcher output, rc)."""
    import subprocess

    # This script runs in GIMP's python-fu-eval plug-in: its parent is GIMP, the upscale plug-in's parent too.
    watcher = subprocess.Popen(
        ["python3", "-c", CANCEL_WATCHER, str(os.getppid())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    status, _, _ = pdb_run(
        UPSCALE, image=image, drawables=[image.get_layers()[0]], model="", scale="x4", device="cpu", tile=64, output="layer"
    )
    try:  # the call has returned: the watcher only has the temp folder's removal left to see (<= 60 s)
        watched = watcher.communicate(timeout=120)[0].strip()
    except subprocess.TimeoutExpired:
        watcher.kill()
        watched = "the watcher never saw this GIMP's worker: " + watcher.communicate()[0].strip()
    return status, watched, watcher.returncode


@step("cancel")
def cancel():
    """GIMP cancels a running plug-in by killing it: the job must stop, the image stay as it was."""
    import glob
    import tempfile

    image = load(task["big_input"])
    before = describe(image)
    status, watched, rc = cancel_upscale(image)
    after = describe(image)
    plugin = watched.split("killed plug-in ")[1].split()[0] if "killed plug-in " in watched else "unknown"
    left = glob.glob(os.path.join(tempfile.gettempdir(), f"avow-gimp-{plugin}-*"))
    say(f"cancel: {watched}; the call returned {status}; image {after['width']}x{after['height']}, "
        f"{len(after['layers'])} layer(s), unchanged: {after == before}; the plug-in's temp folders left: {left}")
    image.delete()
    return {"status": status, "before": before, "after": after, "watcher": watched, "watcher_rc": rc, "left": left}


@step("worker_failure")
def worker_failure():
    image = load(task["input"])
    before = describe(image)
    source = image.get_layers()[0]
    status, _, error = pdb_run(
        UPSCALE, image=image, drawables=[source], model=task["bogus_model"], scale="x4", device="cpu", tile=256, output="layer"
    )
    after = describe(image)
    say(f"bogus model {task['bogus_model']}: status {status}: {error}")
    say(f"image after the failure: {after['width']}x{after['height']}, {len(after['layers'])} layer(s), "
        f"parasite {after['parasite']}, pixels unchanged: {after == before}")
    image.delete()
    return {"status": status, "error": error, "before": before, "after": after}


@step("model_checks")
def model_checks():
    """A typo and a model/scale mismatch are refused in the dialog's words before any worker starts
    (a calling error: the check against the models the last worker listed), the image unchanged."""
    image = load(task["input"])
    before = describe(image)
    result = {}
    for name, model, scale in (("typo", "avow-compact-x3", "x4"), ("mismatch", "avow-compact-x2", "x4")):
        layer = image.get_layers()[0]
        status, _, error = pdb_run(
            UPSCALE, image=image, drawables=[layer], model=model, scale=scale, device="cpu", tile=256, output="layer"
        )
        result[name] = {"status": status, "error": error}
        say(f"model {model} at {scale}: status {status}: {error}")
    result["unchanged"] = describe(image) == before
    image.delete()
    return result


@step("worker_unavailable")
def worker_unavailable():
    """avow.json naming a Python that is gone: an error that says what to run, nothing changed."""
    config_path = task["avow_json"]
    with open(config_path, encoding="utf-8") as handle:
        original = handle.read()
    broken = dict(json.loads(original), python="/nonexistent/avow-venv/bin/python")
    image = load(task["input"])
    before = describe(image)
    try:
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(broken, handle)
        status, _, error = pdb_run(
            UPSCALE, image=image, drawables=[image.get_layers()[0]], model="", scale="x4", device="cpu", tile=256, output="layer"
        )
    finally:
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(original)
    after = describe(image)
    say(f"worker unavailable: status {status}: {error}")
    image.delete()
    return {"status": status, "error": error, "before": before, "after": after}


# --- phase "warm": one GIMP session, many runs, one warm worker --------------------------------


def warm_workers():
    """This GIMP session's warm workers (``python -m avow.warm ... --editor-pid GIMP``), by process id."""
    gimp = str(os.getppid()).encode()
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read().split(b"\0")
            except OSError:
                continue
            if b"avow.warm" in cmdline and gimp in cmdline:
                found.append(int(pid))
    return sorted(found)


def timed_upscale(name):
    import time

    image = load(task["input"])
    started = time.monotonic()
    status, _, error = pdb_run(
        UPSCALE, image=image, drawables=[image.get_layers()[0]], model="", scale="x4", device="cpu", tile=256, output="layer"
    )
    seconds = time.monotonic() - started
    layers = len(image.get_layers())
    image.delete()
    workers = warm_workers()
    say(f"{name}: upscale x4 {status} {error or ''} in {seconds:.2f} s; warm workers {workers}")
    return {"status": status, "error": error, "seconds": seconds, "layers": layers, "workers": workers}


def timed_export(name, target):
    import time

    image = load(task["input"])
    started = time.monotonic()
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(target))
    seconds = time.monotonic() - started
    image.delete()
    workers = warm_workers()
    say(f"{name}: export with Content Credentials {status} {error or ''} in {seconds:.2f} s; warm workers {workers}")
    return {"status": status, "error": error, "seconds": seconds, "workers": workers}


def wait_gone(pid):
    """Whether the process ended (tests/editor_run.py's wait on its pidfd, in GIMP's Python)."""
    import sys

    sys.path.insert(0, task["tests"])
    from editor_run import process_gone

    return process_gone(pid)


@step("warm_reuse")
def warm_reuse():
    """First and second Filters run, first and second export: the second of each finds the worker warm."""
    return {
        "upscale_1": timed_upscale("upscale 1"),
        "upscale_2": timed_upscale("upscale 2"),
        "export_1": timed_export("export 1", task["export_1"]),
        "export_2": timed_export("export 2", task["export_2"]),
    }


@step("warm_restart")
def warm_restart():
    """The warm worker killed between runs (a crash, the OOM killer): the next run, an export, starts
    another (and so gives an export's cold start, for the latency figures)."""
    import signal

    (killed,) = warm_workers()
    os.kill(killed, signal.SIGKILL)
    ended = wait_gone(killed)
    say(f"killed the warm worker {killed}: gone {ended}")
    return {"killed": killed, "ended": ended, "next": timed_export("export after the kill", task["export_3"])}


@step("warm_cancel")
def warm_cancel():
    """GIMP's Cancel (the plug-in killed) mid-upscale: the job stops, its temp folder goes, the worker
    stays warm and answers the next run."""
    image = load(task["big_input"])
    before = describe(image)
    workers = warm_workers()
    status, watched, rc = cancel_upscale(image)
    unchanged = describe(image) == before
    image.delete()
    say(f"cancel with a warm worker: {watched}; the call returned {status}; image unchanged: {unchanged}")
    return {"workers": workers, "status": status, "watcher": watched, "watcher_rc": rc, "unchanged": unchanged,
            "next": timed_upscale("upscale after the cancel")}


@step("warm_version_mismatch")
def warm_version_mismatch():
    """A plug-in installed for another Avow release than its worker's: refused, with what to run."""
    config_path = task["avow_json"]
    with open(config_path, encoding="utf-8") as handle:
        original = handle.read()
    try:
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(dict(json.loads(original), version="0.0.1"), handle)
        result = timed_upscale("upscale with a plug-in of another release")
    finally:
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(original)
    return result


@step("warm_idle")
def warm_idle():
    """[worker] idle_minutes, read again after each run: a worker left idle that long exits, socket and all."""
    import glob
    import tempfile

    settings = os.path.join(task["avow_config"], "config.toml")
    with open(settings, "w", encoding="utf-8") as handle:
        handle.write("[worker]\nidle_minutes = 0.02\n")  # 1.2 s
    try:
        run = timed_upscale("upscale before the idle timeout")
        exited = {pid: wait_gone(pid) for pid in run["workers"]}
    finally:
        os.remove(settings)
    runtime = os.path.join(tempfile.gettempdir(), f"avow-{os.getuid()}")  # no $XDG_RUNTIME_DIR in the tests' GIMP
    sockets = glob.glob(os.path.join(runtime, f"gimp-{os.getppid()}-*.sock"))
    say(f"idle: workers {run['workers']} exited {exited}; sockets left {sockets}")
    return {"run": run, "exited": list(exited.values()), "sockets": sockets}


# --- phase "reopen": a second GIMP session ------------------------------------------------------


@step("reopen_xcf")
def reopen_xcf():
    image = load(task["xcf"])
    state = describe(image)
    say(f"XCF reopened: {state['width']}x{state['height']}, layers {[layer['name'] for layer in state['layers']]}, "
        f"image parasite records {len(state['parasite'] or [])}, synthesized layers "
        f"{[layer['name'] for layer in state['layers'] if layer['parasite']]}")
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(task["signed_jpg"]))
    say(f"export with Content Credentials -> {task['signed_jpg']}: status {status} {error or ''}")
    state["export_status"], state["export_error"] = status, error
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(task["signed_png"]))
    say(f"export with Content Credentials -> {task['signed_png']}: status {status} {error or ''}")
    state["export_png_status"], state["export_png_error"] = status, error
    state["layers_after_export"] = len(image.get_layers())
    image.delete()
    return state


def file_sha256(path):
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@step("repeat_export")
def repeat_export():
    """Filters > Repeat (Ctrl+F) after an export runs it WITH_LAST_VALS: never an unasked overwrite."""
    image = load(task["xcf"])
    before = file_sha256(task["signed_jpg"])
    file = Gio.File.new_for_path(task["signed_jpg"])
    status, _, error = pdb_run_mode(Gimp.RunMode.WITH_LAST_VALS, EXPORT, image=image, file=file)
    unchanged = file_sha256(task["signed_jpg"]) == before
    say(f"export repeated with last values (no display): status {status}: {error}; signed.jpg unchanged: {unchanged}")
    image.delete()
    return {"status": status, "error": error, "unchanged": unchanged}


def synthesized_layer(image):
    return next(layer for layer in image.get_layers() if layer.get_parasite(PARASITE) is not None)


@step("pasted_layer")
def pasted_layer():
    """The AI layer dragged/duplicated into a new image (its parasite goes along, the image has none)."""
    source = load(task["xcf"])
    layer = synthesized_layer(source)
    new = Gimp.Image.new(layer.get_width(), layer.get_height(), Gimp.ImageBaseType.RGB)
    copy = Gimp.Layer.new_from_drawable(layer, new)
    new.insert_layer(copy, None, 0)
    state = describe(new)
    status, _, error = pdb_run(EXPORT, image=new, file=Gio.File.new_for_path(task["pasted_jpg"]))
    say(f"AI layer duplicated into a new image (image parasite {state['parasite']}, layer parasite "
        f"{state['layers'][0]['parasite'] is not None}) exported -> pasted.jpg: {status} {error or ''}")
    new.delete()
    source.delete()
    return {"status": status, "error": error, "state": state}


@step("clipboard_paste")
def clipboard_paste():
    """Edit > Copy of the AI layer, Edit > Paste as > New Image (GIMP 3 copies the layer's parasites
    along); then the same pixels alone in a new image, as pasted from another application: only the
    pixels say what they are, and they decide."""
    image = load(task["mark_input"])
    status, values, error = pdb_run(
        UPSCALE, image=image, drawables=[image.get_layers()[0]], model="", scale="x2", device="cpu", tile=256, output="layer"
    )
    result = {"upscale_status": status, "upscale_error": error}
    if status == "success":
        synthesized = values[1]
        Gimp.edit_copy([synthesized])
        pasted = Gimp.edit_paste_as_new_image()
        bare = Gimp.Image.new(synthesized.get_width(), synthesized.get_height(), Gimp.ImageBaseType.RGB)
        width, height = synthesized.get_width(), synthesized.get_height()
        layer = Gimp.Layer.new(bare, "Pasted", width, height, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        bare.insert_layer(layer, None, 0)
        rectangle = Gegl.Rectangle.new(0, 0, synthesized.get_width(), synthesized.get_height())
        data = synthesized.get_buffer().get(rectangle, 1.0, "R'G'B' u8", Gegl.AbyssPolicy.CLAMP)
        layer.get_buffer().set(rectangle, "R'G'B' u8", bytes(data))
        layer.get_buffer().flush()
        for name, new, target in (("clipboard", pasted, task["clipboard_png"]), ("pixels_only", bare, task["pixels_png"])):
            state = describe(new)
            status, _, error = pdb_run(EXPORT, image=new, file=Gio.File.new_for_path(target))
            result[name] = {"state": state, "status": status, "error": error, "exported": os.path.exists(target)}
            records = [layer["parasite"] is not None for layer in state["layers"]]
            say(f"{name}: new image {new.get_width()}x{new.get_height()}, image record {state['parasite'] is not None}, "
                f"layer records {records}; exported -> {os.path.basename(target)}: {status} {error or ''}")
            new.delete()
    image.delete()
    return result


@step("damaged_parasite")
def damaged_parasite():
    image = load(task["input"])
    image.get_layers()[0].attach_parasite(Gimp.Parasite.new(PARASITE, Gimp.PARASITE_PERSISTENT, list(b'[{"provenance": ')))
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(task["damaged_jpg"]))
    exported = os.path.exists(task["damaged_jpg"])
    say(f"export of an image whose layer parasite is damaged: status {status}: {error}; file written: {exported}")
    image.delete()
    return {"status": status, "error": error, "exported": exported}


@step("export_plain_image")
def export_plain_image():
    """No upscale in this image: signed as edited in GIMP, no AI claimed."""
    image = load(task["input"])
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(task["unmarked_jpg"]))
    say(f"export with Content Credentials of an image without upscales -> {task['unmarked_jpg']}: status {status} {error or ''}")
    image.delete()
    return {"status": status, "error": error}


@step("export_bad_extension")
def export_bad_extension():
    image = load(task["input"])
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(task["bad_export"]))
    say(f"export with Content Credentials to {os.path.basename(task['bad_export'])}: status {status}: {error}")
    image.delete()
    return {"status": status, "error": error}


# --- phase "dialog": GIMP under a virtual X server (xvfb-run), the dialog driven by xdotool ------


def press_in_dialog(title, keys, shot=""):
    """A background process that waits for the dialog, then presses ``keys`` in it (as a user would);
    with ``shot`` and $AVOW_SCREENSHOTS, the screen is saved first as $AVOW_SCREENSHOTS/<shot>.png."""
    import subprocess

    # If the keys do not close it, the window is killed so GIMP's call returns instead of hanging.
    script = (
        'find() { xdotool search --onlyvisible --name "$0" 2>/dev/null | head -n1; }; '
        'for i in $(seq 120); do W=$(find); [ -n "$W" ] && break; sleep 0.5; done; '
        '[ -n "$W" ] || { echo "no dialog window"; exit 3; }; echo "dialog window $W"; '
        'xdotool windowfocus --sync "$W"; sleep 1; '
        'if [ -n "$2" ] && [ -n "$AVOW_SCREENSHOTS" ]; then "$AVOW_VENV/bin/python" -c '
        '"import sys; from PIL import ImageGrab; ImageGrab.grab().save(sys.argv[1])" "$AVOW_SCREENSHOTS/$2.png"; fi; '
        'xdotool key $1; '
        'for i in $(seq 40); do [ -z "$(find)" ] && exit 0; sleep 0.5; done; '
        'echo "the dialog did not close: killed"; xdotool windowkill "$W"; exit 4'
    )
    return subprocess.Popen(["sh", "-c", script, title, keys, shot], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def interactive_upscale(keys, shot=""):
    image = load(task["input"])
    before = describe(image)
    driver = press_in_dialog("^AI Upscale \\(disclosed\\)$", keys, shot)
    status, _, error = pdb_run_mode(
        Gimp.RunMode.INTERACTIVE, UPSCALE, image=image, drawables=[image.get_layers()[0]], scale="x2", device="cpu"
    )
    driver_output = driver.communicate(timeout=60)[0].strip()
    after = describe(image)
    image.delete()
    return {"status": status, "error": error, "before": before, "after": after, "driver": driver_output,
            "driver_rc": driver.returncode}


@step("dialog_cancel")
def dialog_cancel():
    result = interactive_upscale("Escape")
    say(f"dialog ({result['driver']}), Escape: status {result['status']}; image {result['after']['width']}x"
        f"{result['after']['height']}, {len(result['after']['layers'])} layer(s)")
    return result


@step("dialog_ok")
def dialog_ok():
    result = interactive_upscale("alt+o", "gimp-upscale-dialog")
    say(f"dialog ({result['driver']}), OK: status {result['status']} {result['error'] or ''}; image "
        f"{result['after']['width']}x{result['after']['height']}, "
        f"layers {[layer['name'] for layer in result['after']['layers']]}")
    return result


@step("dialog_export_asks")
def dialog_export_asks():
    """With a display: Repeat (WITH_LAST_VALS) shows the export dialog, and exporting onto an existing
    file asks before replacing it; Escape at either leaves the file as it was."""
    image = load(task["input"])
    target = task["dialog_jpg"]
    status, _, error = pdb_run(EXPORT, image=image, file=Gio.File.new_for_path(target))
    result = {"first": {"status": status, "error": error}}
    before = file_sha256(target)
    driver = press_in_dialog("^Export with Content Credentials$", "Escape")
    status, _, error = pdb_run_mode(Gimp.RunMode.WITH_LAST_VALS, EXPORT, image=image, file=Gio.File.new_for_path(target))
    output = driver.communicate(timeout=120)[0].strip()
    result["repeat"] = {"status": status, "error": error, "driver": output, "driver_rc": driver.returncode}
    driver = press_in_dialog("^Export with Content Credentials$", "alt+o", "gimp-export-dialog")
    replace = press_in_dialog("^Replace the existing file\\?$", "Escape", "gimp-export-replace")
    status, _, error = pdb_run_mode(Gimp.RunMode.INTERACTIVE, EXPORT, image=image, file=Gio.File.new_for_path(target))
    result["replace"] = {
        "status": status,
        "error": error,
        "driver": driver.communicate(timeout=120)[0].strip(),
        "replace_driver": replace.communicate(timeout=120)[0].strip(),
        "replace_driver_rc": replace.returncode,
    }
    result["unchanged"] = file_sha256(target) == before
    say(f"export dialogs: {json.dumps(result)}")
    image.delete()
    return result


PHASES = {
    "upscale": [
        registration,
        upscale_layer,
        upscale_new_image,
        upscale_gray_alpha,
        upscale_selection,
        cancel,
        worker_failure,
        model_checks,
        worker_unavailable,
    ],
    "reopen": [
        reopen_xcf, repeat_export, pasted_layer, clipboard_paste, damaged_parasite, export_plain_image, export_bad_extension
    ],
    "dialog": [registration, dialog_cancel, dialog_ok, dialog_export_asks],
    "warm": [warm_reuse, warm_restart, warm_cancel, warm_idle, warm_version_mismatch],
}

save_report()
for run in PHASES[task["phase"]]:
    run()
report["done"] = True
save_report()
say(f"phase {task['phase']} done")
