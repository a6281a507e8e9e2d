"""One warm Avow worker per editor session, reached from every hook process, with the standard library alone.

A GIMP 3 plug-in is a new process for each procedure call: a worker on its pipes would import torch
and load a model for every Filters or Export run. So the first run starts ``python -m avow.warm``
detached (its own session, so it outlives the run) listening on a Unix socket, and every later run
of the same editor session connects to it. The socket lives in a folder only this user can enter
(``runtime_dir``: checked for owner and mode before each use), its name carries the editor's
process id and a digest of the worker's Python, version and environment, so another editor
session, another user or another Avow installation never reaches it; the worker checks the peer's
user too. The handshake is the pipe worker's (``avow_client.check_ready``).

Closing the connection cancels the run's job and removes its scratch folder (GIMP's Cancel kills
the plug-in); the worker stays for the next run. A worker that died, or a leftover socket nobody
listens on, is replaced by a new one. A worker busy with another run's job answers ``busy``; that
run, and any where no private folder can be had, gets a worker of its own as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import typing

import avow_client

LOG_BYTES = 1 << 20  # the warm worker's log (its stderr) starts over past this size
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103  # bytes: sockaddr_un's path, less its NUL


class NoWarmWorker(Exception):
    """No safe socket here (no folder only this user can enter, a path too long, no Unix sockets): the
    run gets a worker of its own."""


def _private(folder: str) -> bool:
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def runtime_dir() -> str:
    """``$XDG_RUNTIME_DIR/avow``, else ``avow-UID`` in the temp folder: made 0700, and used only if it is
    a real folder of this user that nobody else may enter (a folder another user made first is not)."""
    candidates = [os.path.join(tempfile.gettempdir(), f"avow-{os.getuid()}")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        candidates.insert(0, os.path.join(runtime, "avow"))
    for folder in candidates:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        try:
            if _private(folder):
                return folder
        except OSError:
            continue
    raise NoWarmWorker(f"no private folder for Avow's warm worker ({' or '.join(candidates)}: another user's or open to all)")


def socket_path(config: dict, env: dict, editor: str, editor_pid: int) -> str:
    """The editor session's socket: a worker started by another session, Python, version or environment is never reached."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        raise NoWarmWorker("this system has no Unix sockets")
    key = json.dumps([config.get("python"), config.get("version"), config.get("protocol"), sorted(env.items())])
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = os.path.join(runtime_dir(), f"{editor}-{editor_pid}-{digest}.sock")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise NoWarmWorker(f"{path} is too long for a Unix socket")
    return path


def _peer_uid(connection: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return uid


def _sweep(folder: str) -> None:
    """Remove what workers of editor sessions that ended (a GIMP that crashed, a worker killed) left behind."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(r"[a-z]+-(\d+)-[0-9a-f]{16}\.sock(\.lock|\.log)?", name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except OSError:
            continue


class WarmWorker(avow_client.Worker):
    """A connection to the editor session's warm worker, started first if none listens; used as ``Worker`` is.
    ``started``: whether this run had to start it (a cold start) rather than find it warm."""

    def __init__(self, path: str, editor_pid: int, python: str, env: dict, scratch=None, installed=None) -> None:
        super().__init__(python, env=env, scratch=scratch, installed=installed)
        self.path = path
        self.editor_pid = editor_pid
        self.started = False
        self._socket: socket.socket | None = None
        self._reader: typing.TextIO | None = None

    def _launch(self, should_cancel=None) -> None:
        connection = self._connect()
        if connection is None:
            spawned = self._spawn()
            deadline = time.monotonic() + avow_client.START_TIMEOUT
            while connection is None:
                code = spawned.poll()
                try:  # wakes at once when the worker exits (one that lost a start race exits 0)
                    spawned.wait(timeout=0.05) if code is None else time.sleep(0.05)
                except subprocess.TimeoutExpired:
                    pass
                connection = self._connect()
                if connection is not None:
                    break
                if code not in (None, 0):  # e.g. a venv of an older Avow, without avow.warm
                    raise avow_client.WorkerUnavailable(
                        f"Avow's worker did not start ({self._stderr_tail() or f'exit {code}'}). From Avow's environment, "
                        f"run: {avow_client.install_command(self.installed)}"
                    )
                if code == 0:  # it found the lock held by a worker that was exiting (idle): start another
                    spawned = self._spawn()
                if should_cancel is not None and should_cancel():
                    raise avow_client.WorkerError("Cancelled", "cancelled while Avow's worker was starting")
                if time.monotonic() > deadline:
                    raise avow_client.WorkerError(
                        "Timeout", f"Avow's worker gave no answer in {avow_client.START_TIMEOUT:.0f} s"
                    )
        self._socket = connection
        self._reader = connection.makefile("r", encoding="utf-8")

    def _connect(self) -> socket.socket | None:
        """A connection to the worker listening at ``path``, None if none does (no socket, or a stale one)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            raise avow_client.WorkerUnavailable(f"{self.path} is not this user's Avow worker socket; remove it")
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            connection.close()
            return None  # a worker that was killed left its socket: the next one replaces it
        uid = _peer_uid(connection)
        if uid is not None and uid != os.getuid():
            connection.close()
            raise avow_client.WorkerUnavailable(f"{self.path} is served by another user's process; not used")
        return connection

    def _spawn(self) -> subprocess.Popen:
        _sweep(os.path.dirname(self.path))
        log_path = self.path + ".log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        log = os.open(log_path, flags, 0o600)
        try:
            if os.fstat(log).st_size > LOG_BYTES:
                os.ftruncate(log, 0)
            self.started = True
            return subprocess.Popen(
                [self.python, "-m", "avow.warm", "--socket", self.path, "--editor-pid", str(self.editor_pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=self.env, start_new_session=True,
            )
        except OSError as exc:
            raise avow_client.WorkerUnavailable(
                f"cannot start Avow's worker with {self.python}: {exc}. From Avow's environment, run: "
                f"{avow_client.install_command(self.installed)}"
            ) from exc
        finally:
            os.close(log)

    def _lines(self):
        return self._reader

    def _send(self, message: dict) -> None:
        if self._socket is None:
            raise avow_client.WorkerUnavailable("Avow's worker is not connected")
        try:
            self._socket.sendall((json.dumps(message) + "\n").encode("utf-8"))
        except OSError:
            raise avow_client.WorkerUnavailable(f"Avow's worker is gone. {self._stderr_tail()}".strip()) from None

    def _stderr_tail(self) -> str:
        try:
            with open(self.path + ".log", "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - 4096))
                lines = handle.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def alive(self) -> bool:
        return self._socket is not None and not self._ended.is_set()

    def close(self, kill: bool = False) -> None:
        """Leave the worker: a job still running is cancelled and this run's scratch removed; the worker stays warm."""
        connection, self._socket = self._socket, None
        if connection is None:
            return
        for step in (lambda: connection.shutdown(socket.SHUT_RDWR), connection.close):
            try:
                step()
            except OSError:
                pass
        self._stderr.close()


def open_worker(config: dict, env: dict, editor: str, editor_pid: int, scratch=None, should_cancel=None) -> avow_client.Worker:
    """A started worker for one hook run: the editor session's warm one, or one of the run's own where
    the warm one is busy with another run or cannot be had safely."""
    python = config["python"]
    try:
        warm = WarmWorker(socket_path(config, env, editor, editor_pid), editor_pid, python, env, scratch, config)
    except NoWarmWorker as exc:
        print(f"avow: {exc}; this run starts a worker of its own", file=sys.stderr, flush=True)
    else:
        try:
            warm.start(should_cancel)
            return warm
        except avow_client.WorkerBusy:
            pass
    worker = avow_client.Worker(python, env=env, scratch=scratch, installed=config)
    worker.start(should_cancel)
    return worker


def prestart(config: dict, env: dict, editor: str, editor_pid: int) -> None:
    """Start the session's warm worker in the background, if none runs, and return at once: it loads
    while the user fills in a dialog. Nothing here fails the hook."""
    try:
        import fcntl

        path = socket_path(config, env, editor, editor_pid)
        with open(path + ".lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # a worker holds it: running, or starting
            fcntl.flock(lock, fcntl.LOCK_UN)
        WarmWorker(path, editor_pid, config["python"], env, None, config)._spawn()
    except (OSError, NoWarmWorker, avow_client.WorkerError, ImportError):
        pass
