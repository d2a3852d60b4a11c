"""MemoryMetrics and PackageInfo: the per-package data model every renderer reads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_memtrack.tracking.forecast import fit_confidence

if TYPE_CHECKING:
    from pytest_memtrack.tracking.monitor import MemoryMonitor

DEFAULT_HISTORY_SIZE = 100

#: The keys of the spec's ``memory_metrics`` payload, in the spec's order.
METRIC_KEYS = (
    "current_memory_usage", "peak_memory_usage", "memory_footprint", "memory_leak_score", "memory_trend",
    "memory_pressure_level", "memory_growth_rate", "average_memory_usage", "memory_variance",
    "memory_check_count", "last_memory_check", "memory_history_length",
)


@dataclass
class MemoryMetrics:
    """Memory figures of one package.

    ``current_memory_usage``/``peak_memory_usage``: module-state bytes (see ``attribution``) at the last check and
    the highest seen. ``memory_footprint``: bytes the package's import allocated and still held when it finished
    (tracemalloc; RSS growth when tracing was off), excluding nested top-level packages measured on their own.
    ``memory_history``: ``(timestamp, bytes)`` of the checks, the newest ``max_history`` kept.
    """

    current_memory_usage: float | None = None
    peak_memory_usage: float | None = None
    memory_footprint: float | None = None
    memory_growth_rate: float = 0.0
    memory_leak_score: float = 0.0
    memory_trend: str = "stable"
    memory_pressure_level: str = "low"
    memory_history: list[tuple[float, float]] = field(default_factory=list)
    average_memory_usage: float = 0.0
    memory_variance: float = 0.0
    memory_check_count: int = 0
    last_memory_check: float | None = None
    max_history: int = DEFAULT_HISTORY_SIZE
    #: The leak score of the history alone; ``memory_leak_score`` is the higher of it and the hunts' charges.
    history_leak_score: float = 0.0
    #: How well a straight line fits the history (``forecast.fit_confidence``), computed with the history, and only
    #: while the trend is increasing (a forecast's confidence; none is needed otherwise).
    fit_confidence: float = 0.0
    #: Hunted tests whose measured growth was allocated in this package: node id -> the part of the test's leak
    #: score charged to the package (``LazyLoader.charge_hunt``).
    leak_tests: dict[str, float] = field(default_factory=dict)

    def record(self, timestamp: float, memory_bytes: float, monitor: MemoryMonitor,
               pressure_level: str | None = None) -> None:
        """Add one reading and recompute the derived figures (statistics, trend, leak score)."""
        self.memory_history.append((float(timestamp), float(memory_bytes)))
        if len(self.memory_history) > self.max_history:
            del self.memory_history[: len(self.memory_history) - self.max_history]
        self.current_memory_usage = float(memory_bytes)
        self.peak_memory_usage = max(self.peak_memory_usage or 0.0, float(memory_bytes))
        self.memory_check_count += 1
        self.last_memory_check = float(timestamp)
        if pressure_level is not None:
            self.memory_pressure_level = pressure_level
        self.reanalyze(monitor)

    def refresh(self, timestamp: float, memory_bytes: float) -> None:
        """A reading that updates the current and peak figures but stays out of the history, and so out of the
        statistics, trend and leak score (readings asked for from outside a session: see ``LazyLoader``)."""
        self.current_memory_usage = float(memory_bytes)
        self.peak_memory_usage = max(self.peak_memory_usage or 0.0, float(memory_bytes))
        self.last_memory_check = float(timestamp)

    def reanalyze(self, monitor: MemoryMonitor) -> None:
        result = monitor.analyze(self.memory_history)
        stats = result.statistics
        self.average_memory_usage = float(stats["average"])
        self.memory_variance = float(stats["variance"])
        self.memory_growth_rate = float(stats["growth_rate"])
        self.memory_trend = result.trend
        self.fit_confidence = fit_confidence(self.memory_history) if result.trend == "increasing" else 0.0
        self.history_leak_score = float(result.leak_score)
        self.memory_leak_score = max(self.history_leak_score, *self.leak_tests.values(), 0.0)

    def charge(self, nodeid: str, score: float) -> None:
        """A hunted test showed growth allocated in this package, worth ``score`` of its leak score: the package's
        leak score is at least that, so the package view agrees with the hunts (a package read once before and
        once after a hunt shows one step, which no history score can call a leak)."""
        self.leak_tests[nodeid] = max(score, self.leak_tests.get(nodeid, 0.0))
        self.memory_leak_score = max(self.history_leak_score, *self.leak_tests.values())

    def to_payload(self) -> dict[str, Any]:
        """The spec's ``memory_metrics`` object."""
        payload = {key: getattr(self, key) for key in METRIC_KEYS if key != "memory_history_length"}
        payload["memory_history_length"] = len(self.memory_history)
        return {key: payload[key] for key in METRIC_KEYS}


@dataclass
class PackageInfo:
    """One package known to the loader: registered for lazy loading, or observed when imported the ordinary way."""

    name: str
    import_name: str = ""
    status: str = "registered"
    observed: bool = False
    error: str | None = None
    load_time: float | None = None
    loaded_at: float | None = None
    last_used: float | None = None
    module: ModuleType | None = field(default=None, repr=False, compare=False)
    memory_metrics: MemoryMetrics = field(default_factory=MemoryMetrics)
    monitor: MemoryMonitor | None = field(default=None, repr=False, compare=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.import_name:
            self.import_name = self.name

    @property
    def is_loaded(self) -> bool:
        return self.status == "loaded"

    def update_memory_metrics(self, reading: float | None = None, timestamp: float | None = None,
                              pressure_level: str | None = None) -> None:
        """Take a reading of the package's module-state bytes (or use ``reading``) and record it."""
        if self.monitor is None:
            from pytest_memtrack.tracking.monitor import MemoryMonitor

            self.monitor = MemoryMonitor()
        if reading is None:
            if not self.is_loaded:
                return
            reading = self.monitor.get_memory_footprint(self.import_name)
        if pressure_level is None:
            pressure_level = self.monitor.get_memory_pressure_level()
        with self.lock:
            self.memory_metrics.record(timestamp or time.time(), reading, self.monitor, pressure_level)

    def get_memory_summary(self) -> dict[str, Any]:
        """The spec's package memory info payload (data of ``GET /api/packages/memory/{name}``)."""
        with self.lock:
            return {
                "package_name": self.name,
                "memory_metrics": self.memory_metrics.to_payload(),
                "is_loaded": self.is_loaded,
                "status": self.status,
                "leak_tests": sorted(self.memory_metrics.leak_tests),
            }
