"""Running a real editor (GIMP, Krita) from a test on a loaded machine.

One editor session runs many operations, and a busy 2-core machine can make any of them slow; a
budget for the whole session fails healthy runs and hides which step hung. So the limit is per
operation: the editor is stopped only when it has printed nothing for ``idle`` seconds (every
step of the drivers prints a line, worker progress included). The editor runs in its own session
and only that session's processes are ever killed. Every line goes to a transcript file that
outlives the test's temp dirs, so a timeout leaves what happened before it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

IDLE_LIMIT = 600  # seconds without a line of output: one operation, not a session


@dataclass
class EditorRun:
    returncode: int | None
    output: str
    seconds: float
    timed_out: bool
    transcript: Path

    def failure(self, what: str) -> str:
        tail = "\n".join(self.output.splitlines()[-60:])
        return f"{what} printed nothing for {IDLE_LIMIT}s and was stopped; transcript {self.transcript}:\n{tail}"


def kill_session(sid: int) -> None:
    """Kill the processes of the session the test started the editor in (plug-ins and workers may
    run in their own process groups), and no other."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except OSError:
                pass


def run_editor(command: list, env: dict, transcript: Path, idle: float = IDLE_LIMIT) -> EditorRun:
    transcript.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env, start_new_session=True
    )
    lines: list[str] = []
    last = [time.monotonic()]

    def pump() -> None:
        assert process.stdout is not None
        with open(transcript, "w", encoding="utf-8") as log:
            for line in process.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                last[0] = time.monotonic()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    while process.poll() is None:
        if time.monotonic() - last[0] > idle:
            timed_out = True
            kill_session(process.pid)
            break
        time.sleep(0.5)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
    kill_session(process.pid)  # what the editor left behind (a worker whose plug-in died)
    reader.join(timeout=30)
    return EditorRun(process.returncode, "".join(lines), time.monotonic() - started, timed_out, transcript)


def process_gone(pid: int, timeout: float = 120.0) -> bool:
    """Whether the process (not necessarily a child) ended within ``timeout`` seconds, woken by its end
    (a pidfd), not by polling. Also used inside GIMP by tests/gimp/session.py."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
