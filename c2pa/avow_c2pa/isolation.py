"""Verifying untrusted files in child processes, so a native crash or hang costs one verdict, not the run.

exiv2 and the C2PA parser are native code fed by strangers. Each child is long-lived (a C2PA read
takes about 2 ms, starting Python far longer), runs under a memory limit, and is restarted after
it dies; a file that kills its child is reported ``unreadable``, with the end of the child's
stderr kept in the report for diagnosis.

Time is budgeted in CPU seconds of the parse and the watermark search, counted by the kernel
(``RLIMIT_CPU``) from the moment the child starts on a file: start-up, and waiting for a core on
a busy machine, never count. A file that uses up the budget gets ``over-budget``, a verdict that
blames Avow's limit, not the file.

Protocol between parent and child (``python -m avow_c2pa.isolation``): the first line is the
settings; the child answers ``{"ready": true}`` once it has imported everything, then each further
line is a path, answered with one report as a JSON line. A child may be started (``spawn``)
before its settings are known: it imports meanwhile, and reads them when they come.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .report import Report
from .verdicts import OVER_BUDGET, UNREADABLE

CPU_BUDGET = 60  # CPU seconds per file (parse + watermark search); RLIMIT_CPU counts whole seconds
STARTUP_CPU = 300  # CPU seconds a child may spend importing before it says ready
STALL = 600.0  # seconds without an answer while the child uses no CPU: blocked on I/O, not computing
MEMORY_LIMIT = 2 << 30
STDERR_TAIL = 2000  # bytes of a crashed child's stderr kept in its report
#: glibc hands a freed block of more than its (adaptive) mmap threshold, and free memory at the
#: heap's top beyond its trim threshold, back to the kernel, so every file's search faulted its
#: megabytes of numpy temporaries in again: 8,600 page faults and 13-16 ms of system CPU per
#: 0.5 MP JPEG on this project's VM (getrusage), a quarter of its search. Below these sizes a child
#: keeps its memory from file to file; a larger block (a huge decode) still goes back at once.
#: Other C libraries ignore the variables.
CHILD_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


class VerifierPool:
    def __init__(self, anchors: str, allow_remote: bool = False, processes: int | None = None,
                 cpu_budget: int = CPU_BUDGET, memory_limit: int = MEMORY_LIMIT, ocsp: bool = False,
                 spawned: list[_Child] | None = None) -> None:
        """``spawned``: children ``spawn`` started ahead, used first; the pool takes them out of
        the list, and closes those it did not need once ``verify`` ends."""
        if cpu_budget < 1:
            raise ValueError(f"the CPU budget must be at least 1 second, not {cpu_budget}")
        self.settings = {"anchors": anchors, "allow_remote": allow_remote, "ocsp": ocsp,
                         "memory_limit": memory_limit, "cpu_budget": cpu_budget}
        self.processes = _processes(processes)
        self.cpu_budget = cpu_budget
        self.spawned = spawned if spawned is not None else []
        self._taking = threading.Lock()

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
        close(self.spawned)

    def _drive(self, jobs: queue.Queue, results: queue.Queue) -> None:
        child: _Child | None = None
        try:
            while True:
                try:
                    index, path = jobs.get_nowait()
                except queue.Empty:
                    return
                if child is None or not child.alive():
                    with self._taking:
                        child = self.spawned.pop() if self.spawned else _Child()
                    child.start(self.settings)
                report = child.ask(path, self.cpu_budget)
                if not child.alive():
                    child.close()
                    child = None
                results.put((index, report))
        finally:
            if child is not None:
                child.close()


def spawn(processes: int | None, files: int) -> list[_Child]:
    """The parser processes a pool of ``processes`` would use for ``files`` files, started before
    their settings are known: each imports the SDK, exiv2 and numpy (a fifth of a second of CPU)
    while the caller still reads its trust anchors. For ``VerifierPool(spawned=...)``; whatever
    no pool takes, ``close``."""
    return [_Child() for _ in range(min(_processes(processes), files))]


def close(children: list[_Child]) -> None:
    while children:
        children.pop().close()


def _processes(processes: int | None) -> int:
    if processes is not None and processes < 1:
        raise ValueError(f"the number of parser processes must be at least 1, not {processes}")
    return processes or os.cpu_count() or 1


class _Child:
    """One parser process, its stderr kept in an unnamed temp file."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # lives as long as the child; closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "avow_c2pa.isolation"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, encoding="utf-8",
            env={**os.environ, **CHILD_ALLOCATOR},
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        if hasattr(resource, "prlimit"):  # bound the start-up too, and never leave core files behind
            try:
                resource.prlimit(self.process.pid, resource.RLIMIT_CORE, (0, 0))
                resource.prlimit(self.process.pid, resource.RLIMIT_CPU, _cpu_limit(STARTUP_CPU))
            except OSError:
                pass  # it already died: the handshake in start() says so
        self.started = False

    def start(self, settings: dict) -> None:
        """Its settings, then its word that it has imported everything."""
        self.started = self._send(json.dumps(settings)) and self._read_line(STALL) == '{"ready": true}\n'

    def alive(self) -> bool:
        return self.started and self.process.poll() is None

    def ask(self, path: Path, cpu_budget: int) -> Report:
        if not self.started:
            return self._failed(path, "Not checked: Avow's parser process failed to start")
        line = self._read_line(STALL) if self._send(json.dumps(str(path))) else ""
        if line:
            try:
                fields = json.loads(line)
                fields.pop("schema", None)
                return Report(**fields)
            except (ValueError, TypeError):
                pass  # a garbled answer means the child is not well: treat it as a crash
        if line is None:
            return self._failed(path, f"Unreadable: the parser made no progress for {STALL:.0f} s (it was "
                                      "waiting, not computing) and was stopped")
        status = self._stop()
        if status == -signal.SIGXCPU:
            return Report(str(path), OVER_BUDGET, (
                f"Not checked: Avow's CPU budget ({cpu_budget} s per file) ran out while reading it (raise it "
                "with --cpu-budget). This says nothing about the file."
            ))
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        return self._failed(path, f"Unreadable: it crashed the parser ({how})")

    def close(self) -> None:
        self._stop()
        self.stderr.close()

    def _send(self, line: str) -> bool:
        try:
            self.stdin.write(line + "\n")
            self.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def _read_line(self, stall: float) -> str | None:
        """The child's next line ("" once it died); None if it sat idle, using no CPU, for ``stall`` seconds.
        Only an idle child is stopped this way: a busy one is the kernel's CPU limit's to stop."""
        while True:
            before = _cpu_seconds(self.process.pid)
            readable, _, _ = select.select([self.stdout], [], [], stall)
            if readable:
                try:
                    return self.stdout.readline()
                except (OSError, ValueError):
                    return ""
            if _cpu_seconds(self.process.pid) <= before:
                self._stop()
                return None

    def _stop(self) -> int:
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def _failed(self, path: Path, reason: str) -> Report:
        self._stop()
        report = Report(str(path), UNREADABLE, f"{reason}.")
        self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - 16 * STDERR_TAIL))
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        tail = "\n".join(lines)[-STDERR_TAIL:]
        fatal = [line for line in lines if line.startswith("Fatal Python error") and line not in tail]
        report.diagnostics = "\n".join([*fatal[-1:], tail]) or None  # what crashed, then where
        return report


def _cpu_limit(soft: int) -> tuple[int, int]:
    """RLIMIT_CPU at ``soft`` seconds, or at the hard limit this process inherited if that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    return (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc; elsewhere 0, so a stall is never seen as busy)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _serve() -> None:
    import faulthandler
    import math

    from .verify import verify_file  # the SDK, exiv2 and numpy: the parser's, not the parent's

    faulthandler.enable()  # a native crash leaves a Python stack in stderr, which the parent keeps
    settings = json.loads(sys.stdin.readline())
    limit = int(settings["memory_limit"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    budget = int(settings["cpu_budget"])
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        path = Path(json.loads(line))
        used = resource.getrusage(resource.RUSAGE_SELF)
        resource.setrlimit(resource.RLIMIT_CPU, _cpu_limit(math.ceil(used.ru_utime + used.ru_stime) + budget))
        try:
            report = verify_file(path, settings["anchors"], settings["allow_remote"], settings["ocsp"])
        except MemoryError:
            report = Report(str(path), UNREADABLE, "Unreadable: it needs more memory than allowed.")
        except Exception as exc:  # noqa: BLE001 - a parser's unexpected error is that file's verdict, not the run's end
            report = Report(str(path), UNREADABLE, f"Unreadable: {type(exc).__name__}: {exc}")
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=True) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
