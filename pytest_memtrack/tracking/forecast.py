"""When memory runs out at the current growth: one pure forecast for a package or the process.

Every surface (the package payload, the summary's ``process_forecast``, the suggestions, the dashboard, ``/metrics``)
reads :func:`forecast`'s answer.

* **The limit** (``limit_bytes``) is the process's memory limit: the configured byte budget
  (``--memtrack-memory-budget``, ``LazyLoader(memory_budget=...)``), else what the process holds now plus what the
  system still has available (psutil ``virtual_memory().available``). Packages and the process share it: the
  *headroom* is the limit minus the process's resident set size (RSS) now.
* **Growth** (``growth_rate``, bytes/s) is the least-squares slope of the history (``analysis.memory_statistics``),
  the same figure as a package's ``memory_growth_rate``.
* **Time to the limit** (``seconds_to_limit``) is ``headroom / growth_rate``: how long until this growth alone (a
  package's, or the whole process's) has used up the headroom; 0 when the limit is already reached. ``None`` when
  the trend (``analysis.memory_trend``) is not ``increasing``: a stable or shrinking history has no time to a limit.
* **Confidence** (0..1; ``None`` with no time to the limit) is how well a straight line explains the history --
  the r² of the least-squares fit -- times ``min(1, n / FULL_CONFIDENCE_POINTS)`` for ``n`` readings, so a
  line through 3 readings is worth less than one through 20. A steady leak scores near 1; a noisy climb lower.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memtrack.tracking.analysis import memory_statistics, memory_trend

#: Readings from which a forecast's confidence is no longer discounted for having few points.
FULL_CONFIDENCE_POINTS = 10
#: The noise floor of process RSS readings (page-granular, moved by allocator bookkeeping): steps within it are no
#: growth for the process's trend.
PROCESS_NOISE_BYTES = 64 * 1024.0


@dataclass(frozen=True)
class Forecast:
    """A forecast: the payload's ``forecast``/``process_forecast`` object (``to_payload``)."""

    limit_bytes: int
    growth_rate: float
    seconds_to_limit: float | None
    confidence: float | None

    def to_payload(self) -> dict[str, Any]:
        return {"limit_bytes": self.limit_bytes, "growth_rate": self.growth_rate,
                "seconds_to_limit": self.seconds_to_limit, "confidence": self.confidence}


def memory_limit(budget: float | None, process_rss: float, available: float) -> int:
    """The process's limit in bytes: the budget when one is set, else RSS plus the system's available memory."""
    if budget is not None and budget > 0:
        return int(budget)
    return int(max(0.0, process_rss) + max(0.0, available))


def fit_confidence(history: Iterable[Sequence[float]]) -> float:
    """r² of the least-squares line through ``(timestamp, bytes)``, times ``min(1, n / FULL_CONFIDENCE_POINTS)``;
    0 with fewer than 3 readings or no spread in time or bytes."""
    points = [(float(t), float(b)) for t, b in history]
    n = len(points)
    if n < 3:
        return 0.0
    t_mean = math.fsum(t for t, _ in points) / n
    b_mean = math.fsum(b for _, b in points) / n
    stt = math.fsum((t - t_mean) ** 2 for t, _ in points)
    sbb = math.fsum((b - b_mean) ** 2 for _, b in points)
    stb = math.fsum((t - t_mean) * (b - b_mean) for t, b in points)
    if stt <= 0 or sbb <= 0:
        return 0.0
    r_squared = (stb * stb) / (stt * sbb)
    if not math.isfinite(r_squared):
        return 0.0
    return round(min(1.0, max(0.0, r_squared)) * min(1.0, n / FULL_CONFIDENCE_POINTS), 4)


def forecast(history: Iterable[Sequence[float]], *, limit_bytes: int, process_rss: float,
             growth_rate: float | None = None, trend: str | None = None, confidence: float | None = None,
             noise_bytes: float = 0.0) -> Forecast:
    """The forecast of one history against the process's limit (see the module docstring).

    ``growth_rate``, ``trend`` and ``confidence`` default to the history's own (slope; ``memory_trend`` with
    ``noise_bytes``; ``fit_confidence``); a package passes the figures recorded with its history
    (``MemoryMetrics``), so the forecast agrees with them and a request does not redo the maths per package.
    """
    points: list[tuple[float, float]] | None = None
    if growth_rate is None or trend is None:
        points = [(float(t), float(b)) for t, b in history]
    rate = float(growth_rate) if growth_rate is not None else memory_statistics(points or [])["growth_rate"]
    if not math.isfinite(rate):
        rate = 0.0
    direction = trend if trend is not None else memory_trend(points or [], noise_bytes=noise_bytes)
    if direction != "increasing" or rate <= 0:
        return Forecast(int(limit_bytes), rate, None, None)
    headroom = max(0.0, float(limit_bytes) - float(process_rss))
    certainty = confidence if confidence is not None else fit_confidence(points if points is not None else history)
    return Forecast(int(limit_bytes), rate, headroom / rate, certainty)
