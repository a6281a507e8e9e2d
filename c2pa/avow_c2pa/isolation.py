"""Verifying untrusted files in child processes, so a native crash or hang costs one verdict, not the run.

exiv2 and the C2PA parser are native code fed by strangers. Each child is long-lived (a C2PA read
takes about 2 ms, starting Python far longer), runs under a memory limit, and is restarted after
it dies; a file that kills or hangs its child is reported ``unreadable``.

Protocol between parent and child (``python -m avow_c2pa.isolation``): the first line is the
settings, each further line a path; the child answers each path with one report as a JSON line.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .verify import UNREADABLE, Report, verify_file

TIMEOUT = 30.0
MEMORY_LIMIT = 2 << 30


class VerifierPool:
    def __init__(self, anchors: str, allow_remote: bool = False, processes: int | None = None,
                 timeout: float = TIMEOUT, memory_limit: int = MEMORY_LIMIT) -> None:
        self.settings = {"anchors": anchors, "allow_remote": allow_remote, "memory_limit": memory_limit}
        self.processes = processes or os.cpu_count() or 1
        self.timeout = timeout

    def verify(self, paths: Iterable[Path], on_done: Callable[[Report], None] | None = None) -> Iterator[Report]:
        """Reports in the order of ``paths``; ``on_done`` sees each as soon as it is ready."""
        jobs: queue.Queue = queue.Queue()
        count = 0
        for count, path in enumerate(paths, start=1):
            jobs.put((count - 1, Path(path)))
        results: queue.Queue = queue.Queue()
        threads = [
            threading.Thread(target=self._drive, args=(jobs, results), daemon=True)
            for _ in range(min(self.processes, count))
        ]
        for thread in threads:
            thread.start()
        ready: dict[int, Report] = {}
        for next_index in range(count):
            while next_index not in ready:
                index, report = results.get()
                ready[index] = report
                if on_done is not None:
                    on_done(report)
            yield ready.pop(next_index)
        for thread in threads:
            thread.join()

    def _drive(self, jobs: queue.Queue, results: queue.Queue) -> None:
        child = None
        try:
            while True:
                try:
                    index, path = jobs.get_nowait()
                except queue.Empty:
                    return
                if child is None or child.poll() is not None:
                    child = self._spawn()
                report, child = self._ask(child, path)
                results.put((index, report))
        finally:
            if child is not None:
                child.kill()
                child.wait()

    def _spawn(self) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "avow_c2pa.isolation"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8",
        )
        child.stdin.write(json.dumps(self.settings) + "\n")
        child.stdin.flush()
        return child

    def _ask(self, child: subprocess.Popen, path: Path) -> tuple[Report, subprocess.Popen | None]:
        """One report, and the child to use next (None once it had to be killed)."""
        try:
            child.stdin.write(json.dumps(str(path)) + "\n")
            child.stdin.flush()
            readable, _, _ = select.select([child.stdout], [], [], self.timeout)
            line = child.stdout.readline() if readable else None
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            try:
                fields = json.loads(line)
                fields.pop("schema", None)
                return Report(**fields), child
            except (ValueError, TypeError):
                line = ""  # a garbled answer means the child is not well: treat it as a crash
        child.kill()
        returncode = child.wait()
        if line is None:
            reason = f"reading it took over {self.timeout:.0f} s; the parser was stopped"
        else:
            reason = f"it crashed the parser (exit status {returncode})"
        return Report(str(path), UNREADABLE, f"Unreadable: {reason}."), None


def _serve() -> None:
    import resource

    settings = json.loads(sys.stdin.readline())
    limit = int(settings["memory_limit"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        path = Path(json.loads(line))
        try:
            report = verify_file(path, settings["anchors"], settings["allow_remote"])
        except MemoryError:
            report = Report(str(path), UNREADABLE, "Unreadable: it needs more memory than allowed.")
        except Exception as exc:  # a parser's unexpected error is that file's verdict, not the run's end
            report = Report(str(path), UNREADABLE, f"Unreadable: {type(exc).__name__}: {exc}")
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=True) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
