"""One Avow worker per Krita session, kept warm between actions.

A worker's start imports torch and loads a model: many seconds before the first answer. The first
action starts it; the next upscale or export reuses it; it is started again when it died (or was
killed by a Cancel during its start) or when ``avow.json`` changed, and it is closed after
``IDLE_MS`` without an action and when Krita quits (it also exits by itself when Krita's end
closes its stdin). Everything here runs on Krita's main thread; nothing here waits on the worker.
"""

from __future__ import annotations

import signal
import threading

from PyQt5.QtCore import QTimer

IDLE_MS = 10 * 60 * 1000  # a worker holds a model and torch's memory; ten minutes unused gives them back


def survive_broken_pipes() -> None:
    """A worker that died leaves a closed pipe; writing a request to it must fail as an error the
    plugin reports (``BrokenPipeError``), not end Krita, whose embedded Python keeps SIGPIPE's
    default action (terminate). Main thread only."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class WarmWorker:
    def __init__(self, idle_ms: int = IDLE_MS) -> None:
        self.idle_ms = idle_ms
        self._worker = None
        self._config: dict | None = None
        self._timer: QTimer | None = None  # made on first use: Qt needs its application by then

    def take(self, config: dict, make, start):
        """The running worker for ``config``, or ``make()``'s, once ``start(worker)`` returned
        (``start`` raising keeps nothing)."""
        if self._timer is not None:
            self._timer.stop()
        worker = self._worker
        if worker is not None and (config != self._config or not worker.alive()):
            self.close(kill=True)
            worker = None
        if worker is None:
            worker = make()
            start(worker)
            self._worker, self._config = worker, config
        return worker

    def release(self, healthy: bool) -> None:
        """After an action: a worker in an unknown state goes now, a healthy one at the idle timeout."""
        if not healthy:
            self.close(kill=True)
            return
        if self._timer is None:
            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self.close)
        self._timer.start(self.idle_ms)

    def alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    def close(self, kill: bool = False) -> None:
        """End the worker; its exit is awaited in a thread, so Krita's UI never waits on it."""
        if self._timer is not None:
            self._timer.stop()
        worker, self._worker, self._config = self._worker, None, None
        if worker is not None:
            threading.Thread(target=worker.close, kwargs={"kill": kill}, name="avow-worker-close", daemon=True).start()
