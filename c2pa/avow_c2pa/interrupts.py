"""Stop signals (Ctrl-C, SIGTERM, SIGHUP) and c2pa-python's native code.

The SDK calls back into Python to read and write its streams. A ``KeyboardInterrupt`` raised by a
signal handler inside such a callback is swallowed by ctypes ("Exception ignored on calling
ctypes callback function") and the callback's return value becomes garbage: seen here as a Rust
panic that aborts the process and leaves the staged files, or as signing that carries on as if
nothing was asked. So while the SDK runs a stop signal is only recorded; once the SDK returns, the
work is abandoned and the signal goes to the handler it was meant for.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """For the duration, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` like Ctrl-C, so a ``kill`` or a
    closed terminal runs the same clean-up. Afterwards they act as before: a signal that arrives
    while the interpreter exits must not raise into its teardown. A signal the process was started
    with ignored (``nohup``) stays ignored."""
    with _handled_by(signal.default_int_handler):
        yield


@contextmanager
def signals_held() -> Iterator[None]:
    """Record stop signals for the duration; at the end deliver the first one received, so it acts
    after the native call has returned, where Python code can abandon the work.

    The delivered signal's own handler decides what happens (``KeyboardInterrupt``, or the default
    action of ending the process); if that handler merely returns, ``KeyboardInterrupt`` is raised
    anyway: a stop was asked for while the work could not be stopped, and it must not be completed.
    Only the main thread receives Python signals, so elsewhere this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        with _handled_by(lambda number, _frame: received.append(number)):
            yield
    finally:
        if received:
            signal.raise_signal(received[0])  # runs the restored handler before returning
            raise KeyboardInterrupt


@contextmanager
def _handled_by(handler: Any) -> Iterator[None]:
    """``handler`` for each stop signal the process does not ignore, the previous handlers restored after."""
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
