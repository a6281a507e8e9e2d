"""Talking to Avow's worker from inside an editor, with the standard library alone.

GIMP's and Krita's Python have neither torch nor numpy; this file is all an editor hook needs,
and `avow install` copies it next to each hook. Pixels go through .npy files (float32, H x W x C,
alpha last) in a private temp dir; requests and events go through the worker's stdin/stdout as
JSON lines (protocol 2, see avow/worker.py), or through a warm worker's socket (``avow_warm``).
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import queue
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CONFIG_NAME = "avow.json"
PROTOCOL = 2  # the worker protocol this client speaks (avow.PROTOCOL when `avow install` copied it)
START_TIMEOUT = 120.0  # a cold start imports torch
NPY_MAGIC = b"\x93NUMPY"
_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE")
SCRATCH_MARKER = "avow-scratch"  # as avow.worker's: only a folder holding it is ever removed by the worker


class WorkerError(Exception):
    """The worker refused or failed a request; ``message`` is fit to show a user."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class WorkerUnavailable(WorkerError):
    """The worker could not be started; the message says what to run."""

    def __init__(self, message: str) -> None:
        super().__init__("WorkerUnavailable", message)


class WorkerBusy(WorkerError):
    """A shared worker is serving another job; a worker of one's own will do."""


def worker_env() -> dict:
    """The editor's environment minus what would make the worker's Python load the editor's modules.
    ``AVOW_WORKER_PYTHONPATH`` becomes the worker's PYTHONPATH: for running Avow from a checkout (its
    tests do) rather than from the packages installed in the venv."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    if env.get("AVOW_WORKER_PYTHONPATH"):
        env["PYTHONPATH"] = env["AVOW_WORKER_PYTHONPATH"]
    return env


def refuse_unclaimed_mark(report: dict) -> None:
    """The pixels decide: an export whose signed file claims no AI over pixels that carry Avow's mark
    (the worker's ``verify`` report on it) never gets the target's name, whatever the records said."""
    mark = report.get("watermark") or {}
    if mark.get("found") and not report.get("ai_declared"):
        raise WorkerError(
            "UnclaimedMark",
            "the exported pixels carry Avow's mark of AI upscaling, but this image holds no record of that upscale "
            "(a layer copied from another image?), so the file would claim human edits only. Export from the image "
            "where the upscale was made.",
        )


def layer_name(scale, source: str, whole: bool = True) -> str:
    """The synthesized layer's name in either editor: the disclosure first, so a narrow Layers dock
    still shows it; ``whole`` false when only a selection's bounding box was upscaled."""
    return f"AI-upscaled x{scale} (Avow) - {source}" + ("" if whole else " (selection)")


def scratch_dir(prefix: str) -> str:
    """A private (0700) temp folder marked as the hook's own, so a worker given it (``Worker(scratch=)``)
    may remove it when it ends: the one cleanup that survives the editor killing its hook."""
    folder = tempfile.mkdtemp(prefix=prefix)
    with open(os.path.join(folder, SCRATCH_MARKER), "w", encoding="utf-8") as handle:
        handle.write("Avow's temp folder for one editor job; removed when that job's worker ends.\n")
    return folder


def load_config(hook_dir: str | os.PathLike, editor: str | None = None) -> dict:
    """The ``avow.json`` that ``avow install`` wrote beside the hook: which Python runs the worker, and
    the version it was installed for. ``editor`` ("gimp", "krita"): the hook's, for its messages."""
    path = Path(hook_dir) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or not isinstance(config.get("python"), str):
            raise ValueError("no 'python' entry")
    except (OSError, ValueError) as exc:
        raise WorkerUnavailable(
            f"Avow is not set up for this editor ({path}: {exc}). From Avow's environment, run: "
            f"{install_command({'editor': editor})}"
        ) from exc
    if editor is not None:
        config["editor"] = editor
    return config


_HOOK_NAMES = {"gimp": "GIMP plug-in", "krita": "Krita plugin"}


def install_command(config: dict | None) -> str:
    """What the user runs to (re)install this hook, in its editor's words."""
    editor = (config or {}).get("editor")
    return f"avow install {editor}" if editor in ("gimp", "krita") else "avow install gimp (or: avow install krita)"


def check_ready(ready: dict, installed: dict | None) -> None:
    """The handshake: the worker's ``ready`` against the protocol this client speaks and the version
    ``avow install`` recorded beside the hook. A hook copied from another Avow release would send
    requests the worker reads differently; one line says how to bring them together."""
    installed = installed or {}
    protocol = installed.get("protocol", PROTOCOL)
    version = installed.get("version")
    if ready.get("protocol") == protocol == PROTOCOL and (version is None or ready.get("version") == version):
        return
    hook = _HOOK_NAMES.get(str(installed.get("editor")), "editor hook")
    raise WorkerUnavailable(
        f"Avow's worker is version {ready.get('version')} (protocol {ready.get('protocol')}), but this {hook} was "
        f"installed for Avow {version or 'of another release'} (protocol {protocol}). From Avow's environment, "
        f"run: {install_command(installed)}"
    )


class Worker:
    """One worker process; use as a context manager so it always ends with the editor's job."""

    def __init__(
        self, python: str, env: dict | None = None, scratch: str | None = None, installed: dict | None = None
    ) -> None:
        """``scratch``: a folder from ``scratch_dir`` that the worker removes when it ends, even if the editor
        killed the hook (the worker sees its stdin close). ``installed``: the hook's ``avow.json``
        (``load_config``), whose version and protocol the worker must match."""
        self.python = python
        self.env = env
        self.scratch = scratch
        self.installed = installed
        self._ids = itertools.count(1)
        self._events: queue.Queue = queue.Queue()
        self._ended = threading.Event()  # its output closed: it exited, or is exiting
        self._process: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()
        self.ready: dict = {}  # the worker's ready line: its version, protocol and process id

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self, should_cancel=None) -> None:
        """Start the worker and wait for it to be ready (a cold start imports torch: seconds);
        ``should_cancel()`` true meanwhile ends it and raises ``WorkerError("Cancelled")``."""
        self._launch(should_cancel)
        threading.Thread(target=self._pump, daemon=True).start()
        self._handshake(should_cancel)

    def _launch(self, should_cancel=None) -> None:
        try:
            self._process = subprocess.Popen(
                [self.python, "-m", "avow.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=self.env,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as exc:
            raise WorkerUnavailable(
                f"cannot start Avow's worker with {self.python}: {exc}. "
                "From Avow's environment, run: avow install gimp (or: avow install krita)"
            ) from exc

    def _handshake(self, should_cancel=None) -> None:
        """The ``ready`` line checked (``check_ready``), the scratch folder handed over."""
        scratch_id = next(self._ids) if self.scratch else None
        if scratch_id is not None:  # at once, before the slow start: a kill from now on still gets it removed
            self._send({"id": scratch_id, "op": "scratch", "dir": self.scratch})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                ready = self._next_event(0.1)
                break
            except WorkerUnavailable:
                raise
            except WorkerError:
                if should_cancel is not None and should_cancel():
                    self.close(kill=True)
                    raise WorkerError("Cancelled", "cancelled while Avow's worker was starting") from None
                if time.monotonic() > deadline:
                    raise WorkerError("Timeout", f"Avow's worker gave no answer in {START_TIMEOUT:.0f} s") from None
        self.ready = ready
        if ready.get("event") == "busy":  # a shared worker (avow_warm) serving another job
            self.close()
            raise WorkerBusy("Busy", str(ready.get("message", "Avow's worker is busy with another job")))
        if ready.get("event") != "ready":
            self.close()
            raise WorkerUnavailable(f"Avow's worker did not start: {ready.get('message', ready)}")
        try:
            check_ready(ready, self.installed)
        except WorkerUnavailable:
            self.close(kill=True)
            raise
        if scratch_id is not None:
            taken = self._next_event(START_TIMEOUT)
            if taken.get("id") != scratch_id or taken.get("event") != "result":
                self.close()
                message = f"Avow's worker did not take its temp folder: {taken.get('message', taken)}"
                raise WorkerError(taken.get("error", "Error"), message)

    def alive(self) -> bool:
        """Started, not closed, its output still open and its process running: a worker that can take a
        request. (The output's end is the sure sign: an editor may reap its children itself, and then
        ``poll`` never learns of the exit.)"""
        return self._process is not None and not self._ended.is_set() and self._process.poll() is None

    def _lines(self):
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    def _pump(self) -> None:
        try:
            for line in self._lines():
                try:
                    self._events.put(json.loads(line))
                except ValueError:
                    continue
        except (OSError, ValueError):
            pass  # closed under it (``close``): the end, as at end of output
        finally:
            self._ended.set()
            self._events.put(None)

    def _next_event(self, timeout: float) -> dict:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError("Timeout", f"Avow's worker gave no answer in {timeout:.0f} s") from None
        if event is None:
            raise WorkerUnavailable(f"Avow's worker stopped unexpectedly. {self._stderr_tail()}".strip())
        return event

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _send(self, message: dict) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise WorkerUnavailable(f"Avow's worker is gone. {self._stderr_tail()}".strip()) from None

    def request(self, op: str, on_progress=None, should_cancel=None, **params) -> dict:
        """Run one request to its end; progress goes to ``on_progress(done, total)``."""
        job_id = next(self._ids)
        self._send({"id": job_id, "op": op, **params})
        cancel_sent = False
        while True:
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                if should_cancel is not None and not cancel_sent and should_cancel():
                    self._send({"id": job_id, "op": "cancel"})
                    cancel_sent = True
                continue
            if event is None:
                raise WorkerUnavailable(f"Avow's worker stopped unexpectedly. {self._stderr_tail()}".strip())
            if event.get("id") != job_id:
                continue
            kind = event.get("event")
            if kind == "progress":
                if on_progress is not None:
                    on_progress(event["done"], event["total"])
                if should_cancel is not None and not cancel_sent and should_cancel():
                    self._send({"id": job_id, "op": "cancel"})
                    cancel_sent = True
            elif kind == "result":
                return {k: v for k, v in event.items() if k not in ("id", "event")}
            elif kind == "error":
                raise WorkerError(event.get("error", "Error"), event.get("message", "unknown error"))

    def close(self, kill: bool = False) -> None:
        """End the worker: stdin closed (it finishes and exits), or killed (nothing of it is wanted)."""
        process = self._process
        if process is None:
            return
        try:
            if kill:
                process.kill()
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        self._process = None
        self._stderr.close()


# The .npy value types pixels travel in: float32 in [0, 1], or an editor's own values (the worker
# converts those, bit for bit as x / 255.0 or x / 65535.0 in double precision would, and answers in
# the type asked for), so a hook without numpy moves bytes rather than computing per value.
NPY_SIZES = {"<f4": 4, "<f2": 2, "<u2": 2, "|u1": 1, ">f4": 4, ">f2": 2, ">u2": 2}


def write_npy(path: str | os.PathLike, width: int, height: int, channels: int, data: bytes, descr: str = "<f4") -> None:
    """Write H x W x C pixels of type ``descr`` (float32 little-endian by default) as a .npy file (format version 1.0)."""
    if len(data) != width * height * channels * NPY_SIZES[descr]:
        raise ValueError(f"{len(data)} bytes is not {width}x{height}x{channels} {descr} pixels")
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({height}, {width}, {channels}), }}"
    padding = 64 - (len(NPY_MAGIC) + 4 + len(header) + 1) % 64
    header_bytes = (header + " " * padding + "\n").encode("latin1")
    with open(path, "wb") as handle:
        handle.write(NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(header_bytes)) + header_bytes)
        handle.write(data)


def read_npy_header(handle, path: str | os.PathLike, descr: str = "<f4") -> tuple[int, int, int]:
    """Shape (height, width, channels) of an H x W x C .npy file of ``descr`` values; leaves ``handle`` at the first pixel."""
    if handle.read(6) != NPY_MAGIC:
        raise ValueError(f"{path}: not a .npy file")
    major = handle.read(2)[0]
    size_format = "<H" if major == 1 else "<I"
    (length,) = struct.unpack(size_format, handle.read(struct.calcsize(size_format)))
    header = ast.literal_eval(handle.read(length).decode("latin1"))
    if header.get("descr") != descr or header.get("fortran_order") or len(header.get("shape", ())) != 3:
        raise ValueError(f"{path}: expected {descr} H x W x C pixels, got {header}")
    return header["shape"]


def read_npy(path: str | os.PathLike, descr: str = "<f4") -> tuple[int, int, int, bytes]:
    """Read an H x W x C .npy file of ``descr`` values: (width, height, channels, bytes)."""
    with open(path, "rb") as handle:
        height, width, channels = read_npy_header(handle, path, descr)
        data = handle.read()
    if len(data) != width * height * channels * NPY_SIZES[descr]:
        raise ValueError(f"{path}: truncated pixel data")
    return width, height, channels, data
