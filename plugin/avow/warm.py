"""`python -m avow.warm`: one worker that outlives the hook process that started it.

A GIMP 3 plug-in is a new process for every procedure call, so a worker on its stdin/stdout would
import torch and load a model for every Filters or Export run. This one is started detached (its
own session) by the first run and serves a Unix socket in a private per-user folder
(``avow_warm.runtime_dir``); each later run connects instead of starting a worker.

Each connection speaks protocol 2 exactly as ``avow.worker`` does on its pipes (the ``ready`` line
first, carrying this process's id), with one job at a time for the whole process: a connection that
arrives while another is being served waits ``BUSY_WAIT`` seconds for it, then gets
``{"event": "busy"}`` and is closed (the hook then runs a private worker of its own). A connection
that closes cancels what it asked for and removes the temp folders it handed over (``scratch``),
as a worker's closed stdin does; the process stays warm for the next one.

It exits when no connection came for ``[worker] idle_minutes`` (settings, read again after each
connection), when the editor whose process id it was given is gone, or on a stop signal, and
removes its socket as it goes. One process per socket: it holds ``<socket>.lock`` for its whole
life, so a second one started in a race exits at once and its hook connects to the first.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import selectors
import socket
import stat
import sys
import threading
import time

from avow_c2pa.config import DEFAULT_IDLE_MINUTES
from avow_c2pa.errors import EXIT_CANCELLED, EXIT_USAGE, SettingsError
from avow_c2pa.interrupts import stop_signals_raise

BUSY_WAIT = 3.0  # seconds a second connection waits for the first: long enough for a cancelled job to wind down
EDITOR_POLL = 5.0  # seconds between checks that the editor lives, where the kernel cannot signal its end


def idle_seconds() -> float:
    """``[worker] idle_minutes``; a settings file in error keeps the default here (every request that
    reads the settings reports the error itself)."""
    from avow_c2pa.config import settings

    try:
        return settings().worker_idle_minutes * 60.0
    except SettingsError:
        return DEFAULT_IDLE_MINUTES * 60.0


class EditorWatch:
    """Whether the editor that started this worker still runs: a pidfd (readable when it ends) where
    the kernel has them, else a check every ``EDITOR_POLL`` seconds."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.fd: int | None = None
        if pid is not None and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self.fd = os.pidfd_open(pid)

    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # someone else's process: it exists
        return True


class Server:
    def __init__(self, listener: socket.socket, editor: EditorWatch) -> None:
        self.listener = listener
        self.editor = editor
        self.idle = idle_seconds()
        self._job = threading.Lock()  # one job at a time: torch uses every core, and memory is the model's
        self._active: set = set()  # the per-connection workers, so a stop signal can cancel them
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._wake_read, self._wake_write = os.pipe()

    def run(self) -> str:
        """Serve until idle, the editor gone or a stop signal; says which."""
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, "connect")
        selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        if self.editor.fd is not None:
            selector.register(self.editor.fd, selectors.EVENT_READ, "editor")
        with self._lock:
            self._last = time.monotonic()  # the idle time counts from here, not from before torch loaded
        while True:
            with self._lock:
                busy = bool(self._active)
                idle_left = self.idle - (time.monotonic() - self._last)
            timeout = None if busy else max(idle_left, 0.0)
            if self.editor.fd is None and self.editor.pid is not None:
                timeout = EDITOR_POLL if timeout is None else min(timeout, EDITOR_POLL)
            events = selector.select(timeout)
            for key, _ in events:
                if key.data == "connect":
                    self._accept()
                elif key.data == "wake":
                    os.read(self._wake_read, 64)
                elif key.data == "editor":
                    return "editor gone"
            if not self.editor.alive():
                return "editor gone"
            if not events and not busy and idle_left <= 0:  # a connection already waiting is served first
                return "idle"

    def _accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with self._lock:
            self._last = time.monotonic()
        threading.Thread(target=self._serve, args=(connection,), name="avow-connection", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        from .worker import Worker

        output = connection.makefile("w", encoding="utf-8", newline="\n")
        try:
            if not self._job.acquire(timeout=BUSY_WAIT):
                with contextlib.suppress(OSError):
                    output.write('{"event": "busy", "message": "Avow\'s warm worker is busy with another job"}\n')
                    output.flush()
                return
            worker = Worker(output)
            with self._lock:
                self._active.add(worker)
            try:
                worker.serve(connection.makefile("rb"))
            except (OSError, ValueError):
                pass  # the hook went away mid-answer (GIMP's Cancel kills it): its job is stopped, its scratch gone
            finally:
                with self._lock:
                    self._active.discard(worker)
                self._job.release()
        finally:
            with contextlib.suppress(OSError, ValueError):
                output.close()
            connection.close()
            with self._lock:
                self.idle = idle_seconds()
                self._last = time.monotonic()
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")

    def stop(self, wait: float) -> None:
        """Cancel every job (as a closed connection does) and give them ``wait`` seconds to end."""
        with self._lock:
            workers = list(self._active)
        for worker in workers:
            worker.close_input()
        if self._job.acquire(timeout=wait):
            self._job.release()


def listen(path: str) -> tuple[socket.socket, object] | None:
    """The lock and the listening socket at ``path`` (0600), or None when another process holds it."""
    lock = open(path + ".lock", "a")  # held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a leftover of a worker that was killed: nobody listens there (we hold the lock)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_mask)
    listener.listen(8)
    return listener, lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avow.warm", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="where to listen (in a private folder)")
    parser.add_argument("--editor-pid", type=int, help="exit when this process (the editor) ends")
    args = parser.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(args.socket))
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        print(f"avow.warm: {folder} is not a private folder of this user; not listening there", file=sys.stderr)
        return EXIT_USAGE
    held = listen(args.socket)
    if held is None:
        return 0  # another worker serves this socket
    listener, _lock = held
    inode = os.lstat(args.socket).st_ino
    server = Server(listener, EditorWatch(args.editor_pid))
    reason, code = "stopped by a signal", EXIT_CANCELLED
    try:
        with stop_signals_raise():
            from . import worker  # noqa: F401 - torch and the model code load now, before the first connection is served

            reason, code = server.run(), 0
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(OSError):
            if os.lstat(args.socket).st_ino == inode:
                os.unlink(args.socket)
        listener.close()
    server.stop(wait=10.0)
    print(f"avow.warm: exiting ({reason})", file=sys.stderr, flush=True)
    if reason == "editor gone":  # nobody will look for this session's worker again
        for leftover in (args.socket + ".lock", args.socket + ".log"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    # Connection threads may sit in reads holding locks that the interpreter's own exit would wait on.
    os._exit(code)

if __name__ == "__main__":
    sys.exit(main())
