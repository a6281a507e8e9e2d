"""`python -m avow.worker`: the process editors talk to, so torch, c2pa and exiv2 never load into
GIMP or Krita, and a CUDA crash or a hang costs the editor nothing.

Protocol 1, JSON lines. The worker first writes ``{"event": "ready", "protocol": 1, ...}``. A
request is ``{"id": ID, "op": OP, ...}``; its replies carry the same id: any number of
``{"event": "progress", "done": k, "total": n}``, then exactly one ``{"event": "result", ...}`` or
``{"event": "error", "error": KIND, "message": TEXT}`` whose message can be shown to a user as is.
``{"op": "cancel", "id": ID}`` stops that request (it ends with error ``Cancelled``); closing stdin
cancels what runs and exits. Pixels travel as .npy files in the editor's private temp dir, never
through JSON.

Ops: ``describe``; ``upscale`` (input, output .npy; model, scale, tile, device); ``sign`` (file,
provenance records, editor); ``verify`` (file).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
from avow_c2pa.config import user_models_dir
from avow_c2pa.disclosure import Disclosure, sha256_file
from avow_c2pa.errors import ProvenanceError
from avow_c2pa.interrupts import stop_signals_raise
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import editor_export_manifest, seal
from avow_c2pa.staging import staged_path, sweep
from avow_c2pa.verify import trust_anchors, verify_file

from . import __version__
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
from .errors import AvowError, UsageError
from .images import from_array, to_array

PROTOCOL = 1


class Worker:
    def __init__(self, output=sys.stdout) -> None:
        self._output = output
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[dict | None] = queue.Queue()
        self._cancelled: set = set()
        self._closing = threading.Event()

    def emit(self, message: dict) -> None:
        with self._write_lock:
            self._output.write(json.dumps(message, ensure_ascii=True) + "\n")
            self._output.flush()

    def serve(self, requests) -> None:
        self.emit({"event": "ready", "protocol": PROTOCOL, "version": __version__})
        threading.Thread(target=self._read, args=(requests,), daemon=True).start()
        while (job := self._jobs.get()) is not None:
            self._run(job)

    def _read(self, requests) -> None:
        """Reads stdin apart from the job loop, so a cancel arrives while a job is running."""
        for line in requests:
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request must be a JSON object")
            except ValueError as exc:
                self.emit({"id": None, "event": "error", "error": "ProtocolError", "message": f"bad request: {exc}"})
                continue
            if request.get("op") == "cancel":
                self._cancelled.add(request.get("id"))
            else:
                self._jobs.put(request)
        self._closing.set()
        self._jobs.put(None)

    def _run(self, request: dict) -> None:
        job_id, op = request.get("id"), request.get("op")
        handler = OPS.get(op)
        try:
            if handler is None:
                raise UsageError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
            params = {k: v for k, v in request.items() if k not in ("id", "op")}
            result = handler(self, job_id, **params)
            self.emit({"id": job_id, "event": "result", **result})
        except TypeError as exc:
            self.emit({"id": job_id, "event": "error", "error": "ProtocolError", "message": f"{op}: {exc}"})
        except (AvowError, ProvenanceError, LookupError, ValueError) as exc:
            self.emit({"id": job_id, "event": "error", "error": type(exc).__name__, "message": str(exc)})
        except Exception as exc:  # the editor must get an answer, whatever broke
            traceback.print_exc(file=sys.stderr)
            self.emit({"id": job_id, "event": "error", "error": "InternalError", "message": f"{op} failed: {exc}"})
        except KeyboardInterrupt:  # a stop signal: this job is abandoned (its staged files removed), then the worker ends
            with contextlib.suppress(OSError):  # the editor may be gone: that can be why
                self.emit({"id": job_id, "event": "error", "error": "Cancelled", "message": f"{op}: stopped by a signal"})
            raise
        finally:
            self._cancelled.discard(job_id)

    def should_stop(self, job_id) -> bool:
        return self._closing.is_set() or job_id in self._cancelled

    def progress(self, job_id):
        return lambda done, total: self.emit({"id": job_id, "event": "progress", "done": done, "total": total})


def op_describe(worker: Worker, job_id) -> dict:
    from avow_models import DEFAULT_MODELS, builtin_models
    from avow_models.loading import describe_model

    models = [{**d.to_dict(), "origin": "built-in"} for d in builtin_models()]
    folder = user_models_dir()
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
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
    }


def op_upscale(
    worker: Worker, job_id, input: str, output: str, model=None, scale=None, tile=256, device="auto"
) -> dict:
    source, target = Path(input), Path(output)
    loaded = prepare_model(UpscaleOptions(scale=scale, model=model, device=device, tile=int(tile)))
    try:
        pixels = np.load(source, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{source}: not a readable .npy pixel file ({exc})") from exc
    if pixels.ndim != 3:
        raise UsageError(f"{source}: pixels must be H x W x C, not {pixels.shape}")
    check_budget(source.name, pixels.shape[1], pixels.shape[0], loaded.descriptor.scale)
    picture = from_array(np.asarray(pixels, dtype=np.float32), "npy")
    payload = watermark_payload(loaded, picture)
    result = synthesize(
        picture, loaded, pick_device(device), int(tile), payload, worker.progress(job_id),
        lambda: worker.should_stop(job_id),
    )
    pixels_out = to_array(result)
    staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.npy")
    try:
        np.save(staged, pixels_out)
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    height, width, channels = pixels_out.shape
    provenance = disclose(loaded, picture, sha256_file(source), payload).to_dict()
    return {"output": str(target), "width": width, "height": height, "channels": channels, "provenance": provenance}


def op_sign(worker: Worker, job_id, file: str, provenance: list | None = None, editor: str = "editor") -> dict:
    """Disclose and sign a file an editor exported, in place and atomically."""
    target = Path(file)
    if not target.is_file():
        raise UsageError(f"{target}: no such file")
    try:
        records = [Disclosure(**record) for record in provenance or []]
    except TypeError as exc:
        raise UsageError(f"provenance records do not match Avow's: {exc}") from exc
    identity = signing_identity()
    manifest = editor_export_manifest(records, target.name, editor)
    sweep(target.parent)
    staged = staged_path(target, "export")
    try:
        staged.write_bytes(target.read_bytes())
        seal(staged, target, manifest, identity, None, records[-1] if records else None)
    finally:
        staged.unlink(missing_ok=True)  # seal consumes it; this covers a stop before seal began
    return {"file": str(target), "ai_declared": bool(records)}


def op_verify(worker: Worker, job_id, file: str) -> dict:
    return verify_file(Path(file), trust_anchors()).to_dict()


OPS = {"describe": op_describe, "upscale": op_upscale, "sign": op_sign, "verify": op_verify}


def main() -> int:
    # stdout carries the protocol alone: anything a library prints goes to stderr instead.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        with stop_signals_raise():
            Worker(protocol_out).serve(sys.stdin)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
