"""`python -m avow.worker`: the process editors talk to, so torch, c2pa and exiv2 never load into
GIMP or Krita, and a CUDA crash or a hang costs the editor nothing.

Protocol 2, JSON lines. The worker first writes ``{"event": "ready", "protocol": 2, ...}``. A
request is ``{"id": ID, "op": OP, ...}``; its replies carry the same id: any number of
``{"event": "progress", "done": k, "total": n}``, then exactly one ``{"event": "result", ...}`` or
``{"event": "error", "error": KIND, "message": TEXT, "exit_code": CODE}`` whose message can be
shown to a user as is and whose code is the CLI's for the same outcome. ``{"op": "cancel", "id":
ID}`` stops that request (it ends with error ``Cancelled``); closing stdin cancels what runs and
exits. Pixels travel as .npy files in the editor's private temp dir, never through JSON.

Nothing on stdin can stop the worker: a line longer than ``MAX_LINE`` bytes, bytes that are not
UTF-8 or JSON, JSON that is not a request object, an id that is not a string, integer or null, or
parameters the op does not take each get a ``ProtocolError`` (id null when the request's own id
is unusable), and the worker reads on.

Ops: ``describe``; ``upscale`` (input, output .npy; model, scale, tile, device; dtype: the output's value
type, float32 by default; an input of uint8/uint16 means x / 255 or x / 65535, of float16 as is); ``sign`` (file,
provenance records, editor; the result says whether AI was declared and what the pixel search
found); ``verify`` (file); ``scratch`` (dir: the editor's temp folder, which the worker removes when it
ends, since an editor may kill its hook with no chance to clean up).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import queue
import secrets
import shutil
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avow_c2pa.config import user_models_dir
from avow_c2pa.disclosure import COMPOSITE_WITH_AI, Disclosure, FoundMark, sha256_file
from avow_c2pa.errors import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_FILESYSTEM,
    EXIT_USAGE,
    RecordError,
    SigningError,
    describe_os_error,
    discard,
)
from avow_c2pa.formats import OUTPUT_SUFFIXES
from avow_c2pa.interrupts import stop_signals_raise
from avow_c2pa.isolation import VerifierPool
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import editor_export_manifest, seal
from avow_c2pa.pixels import search_file
from avow_c2pa.staging import staged_path, sweep
from avow_c2pa.verify import trust_anchors

from . import DEFAULT_TILE, PROTOCOL, __version__
from .devices import DEVICES, pick_device
from .devices import describe as describe_devices
from .engine import (
    UpscaleOptions,
    check_budget,
    disclose,
    prepare_model,
    synthesize,
    watermark_payload,
)
from .errors import UsageError
from .images import from_array, to_array
from .precheck import check_target, check_tile

MAX_LINE = 1 << 20  # requests are small: pixels travel as files
MAX_ID = 256
SCRATCH_MARKER = "avow-scratch"  # the file a hook puts in each temp folder it made (as avow_client.scratch_dir does)


class ProtocolError(Exception):
    """A line on stdin is not a request this worker can answer."""

    exit_code = EXIT_USAGE


class Worker:
    def __init__(self, output=sys.stdout) -> None:
        self._output = output
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[dict | None] = queue.Queue()
        self._cancelled: set = set()
        self._closing = threading.Event()
        self.scratch: list[Path] = []  # the editor's temp folders, removed when the worker ends

    def emit(self, message: dict) -> None:
        with self._write_lock:
            self._output.write(json.dumps(message, ensure_ascii=True) + "\n")
            self._output.flush()

    def serve(self, requests) -> None:
        self.emit({"event": "ready", "protocol": PROTOCOL, "version": __version__, "pid": os.getpid()})
        threading.Thread(target=self._read, args=(requests,), daemon=True).start()
        try:
            while (job := self._jobs.get()) is not None:
                self._run(job)
        finally:  # stdin closed, a stop signal, or the editor gone (a broken pipe): its temp files too
            for folder in self.scratch:
                if is_scratch(folder):
                    shutil.rmtree(folder, ignore_errors=True)

    def _read(self, requests) -> None:
        """Reads stdin apart from the job loop, so a cancel arrives while a job is running. Whatever
        arrives, it answers and reads on; at end of input it always lets the job loop end."""
        try:
            while line := requests.readline(MAX_LINE + 1):
                try:
                    self._accept(line, requests)
                except ProtocolError as exc:
                    self.emit({"id": None, "event": "error", "error": "ProtocolError", "message": str(exc),
                               "exit_code": ProtocolError.exit_code})
        except Exception:  # noqa: BLE001 - the input itself broke (a closed descriptor): end as at EOF
            traceback.print_exc(file=sys.stderr)
        finally:
            self.close_input()

    def close_input(self) -> None:
        """As the end of input does: what runs is cancelled, the job loop ends and the scratch goes."""
        self._closing.set()
        self._jobs.put(None)

    def _accept(self, line, requests) -> None:
        if len(line) > MAX_LINE:
            while line and not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
                line = requests.readline(MAX_LINE)  # skip the rest of it, a bounded piece at a time
            raise ProtocolError(f"bad request: a line is at most {MAX_LINE} bytes")
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            if not text.strip():
                return
            request = json.loads(text)
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"bad request: not UTF-8 (byte {exc.start})") from None
        except RecursionError:
            raise ProtocolError("bad request: JSON nested too deeply") from None
        except ValueError as exc:
            raise ProtocolError(f"bad request: not JSON ({exc})") from None
        if not isinstance(request, dict):
            raise ProtocolError("bad request: a request must be a JSON object")
        job_id = request.get("id")
        if not (job_id is None or (isinstance(job_id, (int, str)) and not isinstance(job_id, bool))):
            raise ProtocolError("bad request: id must be a string, an integer or null")
        if isinstance(job_id, str) and len(job_id) > MAX_ID or isinstance(job_id, int) and abs(job_id) >= 1 << 63:
            raise ProtocolError("bad request: id too long")
        if request.get("op") == "cancel":
            self._cancelled.add(job_id)
        else:
            self._jobs.put(request)

    def _run(self, request: dict) -> None:
        job_id, op = request.get("id"), request.get("op")
        try:
            handler = OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ProtocolError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
            params = {k: v for k, v in request.items() if k not in ("id", "op")}
            try:
                inspect.signature(handler).bind(self, job_id, **params)
            except TypeError as exc:
                raise ProtocolError(f"{op}: {exc}") from None
            result = handler(self, job_id, **params)
            self.emit({"id": job_id, "event": "result", **result})
        except Exception as exc:  # noqa: BLE001 - the editor must get an answer, whatever broke
            kind, message, code = classify(exc, op)
            self.emit({"id": job_id, "event": "error", "error": kind, "message": message, "exit_code": code})
        except KeyboardInterrupt:  # a stop signal: this job is abandoned (its staged files removed), then the worker ends
            with contextlib.suppress(OSError):  # the editor may be gone: that can be why
                self.emit({"id": job_id, "event": "error", "error": "Cancelled", "message": f"{op}: stopped by a signal",
                           "exit_code": EXIT_CANCELLED})
            raise
        finally:
            self._cancelled.discard(job_id)

    def should_stop(self, job_id) -> bool:
        return self._closing.is_set() or job_id in self._cancelled

    def progress(self, job_id):
        return lambda done, total: self.emit({"id": job_id, "event": "progress", "done": done, "total": total})


def classify(exc: Exception, op) -> tuple[str, str, int]:
    """Error kind, message and exit code from what happened, as the CLI says it (``cli.describe_failure``)."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return type(exc).__name__, str(exc), code
    if isinstance(exc, OSError):
        return "FileSystemError", describe_os_error(exc), EXIT_FILESYSTEM
    traceback.print_exc(file=sys.stderr)
    return "InternalError", f"{op} failed: {type(exc).__name__}: {exc}", EXIT_FAILED


def op_describe(worker: Worker, job_id) -> dict:
    from avow_models import DEFAULT_MODELS, PICKLE_SUFFIXES, builtin_models, describe_model, user_model_files

    models = [{**d.to_dict(), "origin": "built-in"} for d in builtin_models()]
    # As `avow models list` reads them; a pickle is described only by unpickling it, so not here.
    for path in user_model_files(user_models_dir()):
        if path.suffix in PICKLE_SUFFIXES:
            continue
        try:
            models.append({**describe_model(path).to_dict(), "origin": "user"})
        except ValueError:
            continue  # a broken user model is reported when used, not when listing
    devices = [d for d in DEVICES if d != "cuda" or describe_devices()["cuda"]]
    return {
        "version": __version__,
        "models": models,
        "default_models": {str(k): v for k, v in DEFAULT_MODELS.items()},
        "devices": devices,
        "system": describe_devices(),
        # What the hooks would otherwise copy: the formats they may export, the tile size to offer, the
        # IPTC source type to declare.
        "output_formats": list(OUTPUT_SUFFIXES),
        "default_tile": DEFAULT_TILE,
        "ai_source_type": COMPOSITE_WITH_AI,
    }


NPY_DTYPES = ("float32", "float16", "uint16", "uint8")  # what an editor's layer holds; the hook moves bytes, numpy converts
_BAND = 256  # rows converted at a time: the float64 working copy stays small


def _as_float(pixels: np.ndarray) -> np.ndarray:
    """An editor's values as float32 in [0, 1]: integers as x / max in double precision (what a hook
    without numpy computed per value), half floats exactly."""
    if pixels.dtype.name not in NPY_DTYPES:
        raise UsageError(f"pixels of type {pixels.dtype} (not one of {', '.join(NPY_DTYPES)})")
    if pixels.dtype.kind == "f":
        return np.asarray(pixels, dtype=np.float32)
    top = float(np.iinfo(pixels.dtype).max)
    out = np.empty(pixels.shape, np.float32)
    for row in range(0, pixels.shape[0], _BAND):
        out[row : row + _BAND] = pixels[row : row + _BAND] / top
    return out


def _in_dtype(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """float32 [0, 1] pixels as ``dtype``: integers rounded half up after clamping (NaN as 0), in
    double precision; half floats rounded to nearest even."""
    if dtype in ("float32", "float16"):
        return pixels.astype(dtype, copy=False)
    top = float(np.iinfo(dtype).max)
    out = np.empty(pixels.shape, dtype)
    for row in range(0, pixels.shape[0], _BAND):
        band = np.nan_to_num(np.clip(pixels[row : row + _BAND].astype(np.float64), 0.0, 1.0), nan=0.0)
        out[row : row + _BAND] = np.floor(band * top + 0.5)
    return out


def op_upscale(
    worker: Worker, job_id, input: str, output: str, model=None, scale=None, tile=DEFAULT_TILE, device="auto", force=False,
    dtype="float32",
) -> dict:
    """``force`` (false by default, as in the CLI) allows replacing an existing output; the input never."""
    for name, value, types in (("input", input, str), ("output", output, str), ("model", model, (str, type(None))),
                               ("scale", scale, (int, type(None))), ("device", device, str), ("force", force, bool),
                               ("dtype", dtype, str)):
        if not isinstance(value, types) or (name == "scale" and isinstance(value, bool)):
            raise ProtocolError(f"upscale: {name} has the wrong type ({type(value).__name__})")
    if dtype not in NPY_DTYPES:
        raise ProtocolError(f"upscale: dtype {dtype!r} is not one of {', '.join(NPY_DTYPES)}")
    source, target = Path(input), Path(output)
    check_tile(tile)
    check_target(source, target, force)
    loaded = prepare_model(UpscaleOptions(scale=scale, model=model, device=device, tile=tile))
    try:
        pixels = np.load(source, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{source}: not a readable .npy pixel file ({exc})") from exc
    if pixels.ndim != 3:
        raise UsageError(f"{source}: pixels must be H x W x C, not {pixels.shape}")
    check_budget(source.name, pixels.shape[1], pixels.shape[0], loaded.descriptor.scale)
    picture = from_array(_as_float(pixels), "npy")
    payload = watermark_payload(loaded, picture)
    result = synthesize(
        picture, loaded, pick_device(device), int(tile), payload, worker.progress(job_id),
        lambda: worker.should_stop(job_id),
    )
    pixels_out = _in_dtype(to_array(result), dtype)
    staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.npy")
    try:
        np.save(staged, pixels_out)
        os.replace(staged, target)
    finally:
        discard(staged)
    height, width, channels = pixels_out.shape
    provenance = disclose(loaded, picture, sha256_file(source), payload).to_dict()
    return {"output": str(target), "width": width, "height": height, "channels": channels, "provenance": provenance}


def op_sign(worker: Worker, job_id, file: str, provenance: list | None = None, editor: str = "editor") -> dict:
    """Disclose and sign a file an editor exported, in place and atomically.

    The pixels decide: the export is searched for Avow's mark (every key the user has) before
    anything is signed, and a mark found makes the manifest declare AI synthesis whatever the
    records say; records only add which model and scale. Records that cannot be read refuse the
    export: signing without them could take a disclosure away.
    """
    target = Path(file)
    if not target.is_file():
        raise UsageError(f"{target}: no such file")
    records = editor_records(provenance)
    identity = signing_identity()
    mark = search_file(target)
    if not mark["checked"] and not records:
        raise SigningError(
            f"{target.name}: cannot look for Avow's mark in the exported pixels ({mark['reason']}); "
            "not signing it as free of AI synthesis"
        )
    found = FoundMark(mark["identifier"]) if mark["found"] else None
    manifest = editor_export_manifest(records, target.name, editor, found)
    sweep(target.parent)
    staged = staged_path(target, "export")
    try:
        staged.write_bytes(target.read_bytes())
        seal(staged, target, manifest, identity, None, records[-1] if records else found)
    finally:
        discard(staged)  # seal consumes it; this covers a stop before seal began
    return {"file": str(target), "ai_declared": bool(records) or found is not None, "watermark": mark}


def editor_records(provenance: object) -> list[Disclosure]:
    """The editor's Avow records, each checked; ``None`` or [] means the document holds none."""
    if provenance is None:
        return []
    if not isinstance(provenance, list):
        raise RecordError(
            f"the document's Avow records cannot be read (a list expected, not {type(provenance).__name__}); not signing"
        )
    records = []
    for number, record in enumerate(provenance, 1):
        try:
            records.append(Disclosure.from_record(record))
        except RecordError as exc:
            raise RecordError(f"the document's Avow record {number} cannot be read ({exc}); not signing") from None
    return records


def op_verify(worker: Worker, job_id, file: str) -> dict:
    """Through the same isolated pool as ``avow verify``: a hostile file costs a child process (memory
    limit, timeout), never the worker the editor relies on."""
    if not isinstance(file, str):
        raise ProtocolError(f"verify: file has the wrong type ({type(file).__name__})")
    (report,) = VerifierPool(trust_anchors(), processes=1).verify([Path(file)])
    return report.to_dict()


def is_scratch(folder: Path) -> bool:
    """A real folder (not a link) of this user that holds a hook's marker: the only kind ever removed."""
    try:
        owned = not hasattr(os, "getuid") or folder.lstat().st_uid == os.getuid()
        return owned and not folder.is_symlink() and folder.is_dir() and (folder / SCRATCH_MARKER).is_file()
    except OSError:
        return False


def op_scratch(worker: Worker, job_id, dir: str) -> dict:
    """Takes the editor's private temp folder: the worker removes it when it ends, whatever ended it.
    GIMP cancels a plug-in with SIGKILL, leaving it no chance to clean up; its worker sees stdin close."""
    if not isinstance(dir, str) or not os.path.isabs(dir):
        raise ProtocolError("scratch: dir must be an absolute path")
    folder = Path(dir)
    if not is_scratch(folder):
        raise UsageError(f"{folder}: not an editor's temp folder (no {SCRATCH_MARKER} file in it); not taken")
    worker.scratch.append(folder)
    return {"dir": str(folder)}


OPS: dict[str, Callable[..., dict]] = {
    "describe": op_describe, "upscale": op_upscale, "sign": op_sign, "verify": op_verify, "scratch": op_scratch,
}


def main() -> int:
    # stdout carries the protocol alone: anything a library prints goes to stderr instead.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        with stop_signals_raise():
            Worker(protocol_out).serve(sys.stdin.buffer)
    except KeyboardInterrupt:
        # The reader thread sits in stdin's read holding its lock, and a normal interpreter
        # shutdown aborts on that lock: leave at once (the job's staged files are already gone).
        for stream in (protocol_out, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(EXIT_CANCELLED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
