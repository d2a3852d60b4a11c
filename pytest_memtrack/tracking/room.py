"""The loader's view of memory room: the process's limit, its RSS readings, and the forecasts built on them.

The maths is ``forecast``'s (pure); this holds the state it needs: the budget (None: the system's available
memory), the process's ``(timestamp, RSS)`` history taken at every reading pass, and the monitor to read from.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pytest_memtrack.tracking.analysis import memory_trend
from pytest_memtrack.tracking.forecast import PROCESS_NOISE_BYTES, Forecast, forecast, memory_limit
from pytest_memtrack.tracking.metrics import DEFAULT_HISTORY_SIZE, PackageInfo
from pytest_memtrack.tracking.monitor import MemoryMonitor


@dataclass(frozen=True)
class Room:
    """One reading of the room: the limit (bytes) and the process's RSS now."""

    limit_bytes: int
    process_rss: float


class MemoryRoom:
    """Thread-safe: a server thread reads forecasts while the session records passes."""

    def __init__(self, monitor: MemoryMonitor, budget: int | None = None,
                 history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        self.monitor = monitor
        #: The process's memory limit in bytes; None: RSS plus the system's available memory.
        self.budget = budget
        self.history_size = history_size
        #: A room recorded elsewhere (a merge of shards reads its shards', not the merging process's): read returns
        #: it; ``live=False`` with none recorded means unknown, and payloads then carry no forecasts.
        self.recorded: Room | None = None
        self.live = True
        self._lock = threading.Lock()
        self._history: list[tuple[float, float]] = []

    def read(self) -> Room | None:
        if self.recorded is not None or not self.live:
            return self.recorded
        rss = self.monitor.get_current_memory_usage()
        available = 0.0 if self.budget else self.monitor.get_available_memory()
        return Room(memory_limit(self.budget, rss, available), rss)

    def record(self, timestamp: float) -> None:
        """One RSS reading of the process into its history (the newest ``history_size`` kept)."""
        rss = self.monitor.get_current_memory_usage()
        with self._lock:
            self._history.append((timestamp, rss))
            del self._history[:-self.history_size]

    def history(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._history)

    def package(self, info: PackageInfo, room: Room) -> Forecast:
        """A package's forecast: its recorded growth rate and trend against the process's headroom."""
        with info.lock:
            m = info.memory_metrics
            return forecast(m.memory_history, limit_bytes=room.limit_bytes, process_rss=room.process_rss,
                            growth_rate=m.memory_growth_rate, trend=m.memory_trend, confidence=m.fit_confidence)

    def process(self, room: Room) -> Forecast:
        """The process's forecast over its RSS history (trend with the RSS noise floor)."""
        history = self.history()
        return forecast(history, limit_bytes=room.limit_bytes, process_rss=room.process_rss,
                        trend=memory_trend(history, noise_bytes=PROCESS_NOISE_BYTES))
