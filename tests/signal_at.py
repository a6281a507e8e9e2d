"""Run an Avow entry point and send this very process a signal at a named moment of its work.

    python tests/signal_at.py MOMENT[+SECONDS] SIGNAL MODULE [ARGS...]
    e.g. python tests/signal_at.py sdk-write TERM avow upscale in.jpg -o out.png

With +SECONDS the signal is sent that long after the moment (from a timer thread); the moment
``times`` sends nothing and prints, at exit, when each moment was first reached.

The fail-closed trials (tests/test_fail_closed.py, bench/bench_signals.py) use it to hit the
narrow windows of a real run exactly, whatever the machine's speed: moments are recognised from
Python's audit events (file opens, ctypes calls, renames) and from the engine's progress, never
from sleeps. Nothing in Avow is replaced: the real CLI or worker runs, and is interrupted.

Moments, in the order a run meets them:
  model      the weights file is opened
  tile       a tile is done (the first one, unless +SECONDS)
  stage      the staged pixels file is opened for writing
  sign       the disclosed staged file is opened for signing (EXIF/XMP already written)
  sdk-read   inside c2pa-python's read callback, while the SDK runs
  sdk-write  inside c2pa-python's write callback, while the SDK runs
  replace    just before the signed file is moved onto the target
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import threading
import time

PARTIAL = ".avow-partial"


def _writing(args: tuple) -> bool:
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR))


def _path(args: tuple) -> str:
    return os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""


def _moment(event: str, args: tuple, state: dict) -> str | None:
    """The moment an audit event marks, if any."""
    if event == "open":
        path = _path(args)
        if path.endswith(".signed" + PARTIAL) and _writing(args):
            state["signing"] = True
        if path.endswith((".safetensors", ".pth")):
            return "model"
        if path.endswith(PARTIAL) and ".pixels." in path and _writing(args):
            return "stage"
        if path.endswith(PARTIAL) and not _writing(args):
            return "sign"
    elif state["signing"] and event == "ctypes.addressof":
        return "sdk-read"
    elif state["signing"] and event == "ctypes.string_at":
        return "sdk-write"
    elif event == "os.rename" and _path(args).endswith(".signed" + PARTIAL):
        return "replace"
    return None


def main() -> None:
    wanted, signame, module, *arguments = sys.argv[1:]
    wanted, _, after = wanted.partition("+")
    signum = getattr(signal, f"SIG{signame}")
    # As from an interactive shell: a suite run in the background inherits SIGINT ignored, and one
    # run under nohup SIGHUP (which Avow then leaves ignored, as it should: the user asked for it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    state = {"signing": False, "fired": False}
    started = time.monotonic()
    seen: dict[str, float] = {}

    def reached(moment: str) -> None:
        seen.setdefault(moment, time.monotonic() - started)
        if wanted == "times" or moment != wanted or state["fired"]:
            return
        state["fired"] = True
        if after:
            threading.Timer(float(after), os.kill, (os.getpid(), signum)).start()
        else:
            os.kill(os.getpid(), signum)

    if wanted == "times":
        atexit.register(lambda: print(json.dumps({**seen, "exit": time.monotonic() - started}), file=sys.stderr))
    sys.addaudithook(lambda event, args: (moment := _moment(event, args, state)) and reached(moment))
    if wanted in ("tile", "times"):  # imports torch, which the CLI would do later
        from avow import tiling

        bands = tiling.bands

        def bands_reporting_tiles(*args, on_progress=None, **kwargs):
            def progress(done: int, total: int) -> None:
                if on_progress is not None:
                    on_progress(done, total)
                reached("tile")

            return bands(*args, on_progress=progress, **kwargs)

        tiling.bands = bands_reporting_tiles
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
