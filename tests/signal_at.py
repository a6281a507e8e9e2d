"""Run an Avow entry point and send this very process a signal at a named moment of its work.

    python tests/signal_at.py MOMENT SIGNAL MODULE [ARGS...]
    e.g. python tests/signal_at.py sdk-write TERM avow upscale in.jpg -o out.png

The fail-closed trials (tests/test_fail_closed.py, bench/bench_signals.py) use it to hit the
narrow windows of a real run exactly, whatever the machine's speed: moments are recognised from
Python's audit events (file opens, ctypes calls, renames) and from the engine's progress, never
from sleeps. Nothing in Avow is replaced: the real CLI or worker runs, and is interrupted.

Moments, in the order a run meets them:
  model      the weights file is opened
  tile       the first tile is done
  stage      the staged pixels file is opened for writing
  sign       the disclosed staged file is opened for signing (EXIF/XMP already written)
  sdk-read   inside c2pa-python's read callback, while the SDK runs
  sdk-write  inside c2pa-python's write callback, while the SDK runs
  replace    just before the signed file is moved onto the target
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

PARTIAL = ".avow-partial"


def _writing(args: tuple) -> bool:
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR))


def _path(args: tuple) -> str:
    return os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""


def main() -> None:
    moment, signame, module, *arguments = sys.argv[1:]
    signum = getattr(signal, f"SIG{signame}")
    # As from an interactive shell: a suite run in the background inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    state = {"signing": False, "fired": False}

    def fire() -> None:
        if not state["fired"]:
            state["fired"] = True
            os.kill(os.getpid(), signum)

    def hook(event: str, args: tuple) -> None:
        if state["fired"]:
            return
        if event == "open":
            path = _path(args)
            if path.endswith(".signed" + PARTIAL) and _writing(args):
                state["signing"] = True
            if (
                (moment == "model" and path.endswith((".safetensors", ".pth")))
                or (moment == "stage" and path.endswith(PARTIAL) and ".pixels." in path and _writing(args))
                or (moment == "sign" and path.endswith(PARTIAL) and not _writing(args))
            ):
                fire()
        elif state["signing"] and (
            (moment == "sdk-read" and event == "ctypes.addressof")
            or (moment == "sdk-write" and event == "ctypes.string_at")
        ):
            fire()
        elif moment == "replace" and event == "os.rename" and _path(args).endswith(".signed" + PARTIAL):
            fire()

    if moment == "tile":
        from avow import tiling

        upscale = tiling.upscale

        def upscale_then_fire(*args, on_progress=None, **kwargs):
            def progress(done: int, total: int) -> None:
                if on_progress is not None:
                    on_progress(done, total)
                fire()

            return upscale(*args, on_progress=progress, **kwargs)

        tiling.upscale = upscale_then_fire
    sys.addaudithook(hook)
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
