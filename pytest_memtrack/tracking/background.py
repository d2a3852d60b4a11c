"""Periodic memory checks outside a test session (the spec's "Memory Check Interval: 30 seconds").

In an application, ``get_lazy_loader().start_monitoring()`` takes a reading of every loaded package every
``interval`` seconds on a daemon thread, so histories, trends and leak scores build up without anyone calling
``update_all_memory_metrics()``. Under pytest the plugin schedules its own passes within an overhead budget and
does not use this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CHECK_INTERVAL = 30.0


@dataclass(frozen=True)
class MonitoringStatus:
    running: bool
    interval: float | None
    checks: int
    last_check: float | None
    last_error: str | None


class PeriodicCheck:
    """Calls ``check`` every ``interval`` seconds on a daemon thread until stopped.

    An exception from ``check`` is kept (``status().last_error``) and the next check still runs: a monitor that
    dies on the first hiccup would silently stop producing history.
    """

    def __init__(self, check: Callable[[], object], interval: float = DEFAULT_CHECK_INTERVAL,
                 name: str = "memtrack-monitor") -> None:
        if not (isinstance(interval, (int, float)) and interval > 0):
            raise ValueError(f"monitoring interval must be a positive number of seconds, got {interval!r}")
        self.interval = float(interval)
        self._check = check
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._checks = 0
        self._last_check: float | None = None
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and wait for a check in progress to finish."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def status(self) -> MonitoringStatus:
        with self._lock:
            return MonitoringStatus(self.running, self.interval, self._checks, self._last_check, self._last_error)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._check()
                error = None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._checks += 1
                self._last_check = time.time()
                self._last_error = error
