"""Pure maths over memory histories: statistics, trend and leak score.

A *history* is a sequence of ``(timestamp_seconds, bytes)`` pairs.  It may be
empty or unsorted; every function sorts it by timestamp first (a stable sort,
so readings sharing a timestamp keep their recorded order).  Nothing here does
I/O, so the loader can call :func:`analyze` on every metrics update.

Leak score definition
---------------------
``leak_score(history, reference_bytes=R, noise_bytes=N, warmup=W)`` is a number
in ``[0, 1]`` computed as follows (``N`` below 0 is treated as 0):

1. Sort by timestamp and drop warm-up readings: ``W`` readings if given, else
   ``max(1, n // 5)`` when ``n >= 5``, else none.  If fewer than 3 readings
   remain the score is ``0.0``.
2. Take the ``m`` deltas between consecutive remaining readings.  A delta is
   *up* if ``> N``, *down* if ``< -N``, otherwise flat.
3. ``persistence = max(0, (ups - downs - sqrt(ups + downs)) / (ups + downs))``:
   the share of moving steps that grew beyond what chance would give (a sign
   test: flat steps are ties and dropped, so growth every k-th step weighs
   as much as growth every step; noise and allocate/free sawtooths cancel
   out; ``k`` steady steps give ``(k - sqrt(k)) / k``).  Fewer than
   ``MIN_GROWING_STEPS`` (3) up steps score 0: one or two steps are no
   pattern, and a sign test on two cannot tell growth from chance.
4. ``recency = min(1, max(0, (ups - downs) / (w * rate)))`` over the last
   ``w`` deltas, where ``rate = ups / m`` and ``w`` is a third of the steps
   or one and a half times the spacing of the up steps, whichever is more,
   and at most half the steps (at least 2): growth must still be going on
   at the pace it went on before, so a one-off step, a cache that fills
   once or growth that plateaus scores ~0, while growth every third call is
   not mistaken for a plateau between its steps.
5. ``net = last - first`` remaining reading.  If ``net <= N`` the score is 0.
6. ``consistency = sqrt(net / sum(|delta|))``: the square root of the
   efficiency ratio (1 for monotone growth).  Refinement found by the
   random-noise property test: pure noise can show an up-heavy sign pattern
   by chance, but then its large down steps cancel its up steps, so it
   travels far to get nowhere; a real leak's path is mostly net growth.
   It is scale-free, so larger growth of the same shape never scores lower.
7. ``per_step = net / m``, ``unit = R / 1024`` and
   ``magnitude = min(1, log1p(per_step / unit) / log1p(R / unit))`` -- a
   log scale on which ``R`` bytes per step is full weight and 1 KiB per step
   (with the default R = 1 MiB) weighs ~0.1.  ``R <= 0`` makes magnitude 1.
8. ``score = round(clamp(persistence * recency * consistency * magnitude,
   0, 1), 4)``;
   a non-finite intermediate (only possible with values near the float
   limits) yields a finite result, never NaN.

Comparison with CPython's refleak check
----------------------------------------
``Lib/test/libregrtest/refleak.py`` runs a test repeatedly, drops the warm-up
runs and reports a leak only when *every* remaining memory-block delta is
``>= 1`` (``all(delta >= 1)``); since bpo-30776 this ignores false positives
such as ``[3, 0, 0]`` or ``[8, -8, 1]`` that a total-based check flags.  That all-or-nothing rule suits an
interpreter's exact block counts; RSS-style histories are noisy, so a single dip would hide a real
leak.  We instead use a sign test (persistence, tolerant of some down steps),
plus a recency requirement (still growing at the end), plus a consistency
factor (net growth vs distance travelled), plus a magnitude factor
(how many bytes per step), and return a graded score rather than a boolean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_memtrack.tracking.payloads import is_leaking

__all__ = [
    "HistoryAnalysis",
    "analyze",
    "detect_leak",
    "leak_score",
    "memory_statistics",
    "memory_trend",
]

History = Iterable[Sequence[float]]

_STAT_KEYS = (
    "average",
    "variance",
    "std_dev",
    "min",
    "max",
    "count",
    "first",
    "last",
    "growth",
    "growth_rate",
    "duration",
)


def _median(values: Sequence[float]) -> float:
    """``statistics.median``, without importing ``statistics`` (it imports fractions and decimal: ~2 ms of every
    session's start-up)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _sorted(history: History) -> list[tuple[float, float]]:
    """Sort by timestamp (stable), because callers may append out of order."""
    return sorted(((float(t), float(b)) for t, b in history), key=lambda p: p[0])


def _mean(values: Sequence[float]) -> float:
    """Mean that cannot overflow: divide before summing (values may be ~1e308)."""
    n = len(values)
    try:
        return math.fsum(v / n for v in values)
    except OverflowError:  # pragma: no cover - defensive
        return sum(v / n for v in values)


def _sum(values: Iterable[float]) -> float:
    """fsum for accuracy, but fall back to inf instead of raising on overflow."""
    items = list(values)
    try:
        return math.fsum(items)
    except (OverflowError, ValueError):
        return sum(items)


def memory_statistics(history: History) -> dict[str, float]:
    """Summary numbers for a history; all zeros when empty, never raises.

    ``growth_rate`` is the least-squares slope of bytes over time (bytes/s),
    so one outlier at either end does not define the rate the way
    ``growth / duration`` would.
    """
    points = _sorted(history)
    if not points:
        return {key: 0.0 for key in _STAT_KEYS}
    times = [t for t, _ in points]
    values = [b for _, b in points]
    n = len(values)
    mean = _mean(values)
    variance = _sum((v - mean) * (v - mean) for v in values) / n
    growth_rate = 0.0
    if n >= 2:
        t_mean = _mean(times)
        dts = [t - t_mean for t in times]
        denominator = _sum(dt * dt for dt in dts)
        if denominator > 0:
            numerator = _sum(dt * (v - mean) for dt, v in zip(dts, values))
            growth_rate = numerator / denominator
            if math.isnan(growth_rate):
                growth_rate = 0.0
    return {
        "average": mean,
        "variance": variance,
        "std_dev": math.sqrt(variance),
        "min": min(values),
        "max": max(values),
        "count": float(n),
        "first": values[0],
        "last": values[-1],
        "growth": values[-1] - values[0],
        "growth_rate": growth_rate,
        "duration": times[-1] - times[0],
    }


def _robust_slope(values: Sequence[float]) -> float:
    """Median of pairwise slopes over index at lags h and h+1 (h = n // 3).

    This is Theil's incomplete (fixed-lag) estimator: O(n log n) rather than
    Theil-Sen's O(n^2 log n), robust to outliers, and using two adjacent lags
    makes any period-2 allocate/free sawtooth give a median of exactly 0.
    """
    n = len(values)
    h = max(1, n // 3)
    slopes = [
        (values[i + lag] - values[i]) / lag
        for lag in (h, h + 1)
        if lag < n
        for i in range(n - lag)
    ]
    return _median(slopes) if slopes else 0.0


def _trend_of(values: Sequence[float], noise_bytes: float) -> str:
    """Trend of already time-sorted byte values (see :func:`memory_trend`)."""
    n = len(values)
    if n < 3:
        return "stable"
    slope = _robust_slope(values)
    k = max(1, n // 3)
    change = _median(values[-k:]) - _median(values[:k])
    noise = max(0.0, noise_bytes)
    # The same floor as the leak score's: a step counts only beyond ``noise``, so a history whose steps are all
    # within it reads "stable", never "increasing" beside a score of 0.
    if slope > noise and change > noise:
        return "increasing"
    if slope < -noise and change < -noise:
        return "decreasing"
    return "stable"


def memory_trend(history: History, *, noise_bytes: float = 0.0) -> str:
    """Return "increasing", "decreasing" or "stable" for the history's level.

    Requires both a robust slope (median of fixed-lag pairwise slopes over
    reading index) of that sign and a net change -- median of the last third
    minus median of the first third -- beyond ``noise_bytes``; fewer than 3
    readings are "stable".  Medians make single spikes and sawtooths "stable".

    Choice: the trend describes the direction of the whole window (like a
    sparkline arrow), not whether growth is ongoing.  A one-off step that
    stays up is "increasing" when enough of the lag pairs straddle it (a step
    near the middle); an early or late step reads "stable".  Whether growth
    is *still going on* is :func:`leak_score`'s job (its recency factor).
    """
    return _trend_of([b for _, b in _sorted(history)], noise_bytes)


#: Up steps a history needs before its growth is a pattern (see the module docstring, step 3).
MIN_GROWING_STEPS = 3


def _persistence(deltas: Sequence[float], noise: float) -> float:
    """Share of moving steps that grew, net of down steps and of chance (a sign test: flat steps are ties)."""
    ups = sum(1 for d in deltas if d > noise)
    downs = sum(1 for d in deltas if d < -noise)
    if ups < MIN_GROWING_STEPS:
        return 0.0
    return max(0.0, (ups - downs - math.sqrt(ups + downs)) / (ups + downs))


def _recency(deltas: Sequence[float], noise: float) -> float:
    """Whether growth goes on at the end at the pace it had before (see the module docstring, step 4)."""
    m = len(deltas)
    ups = sum(1 for d in deltas if d > noise)
    if not ups:
        return 0.0
    spacing = m / ups
    window = min(max(math.ceil(m / 3), math.ceil(1.5 * spacing)), max(2, m // 2))
    recent = deltas[-window:]
    net_ups = sum(1 for d in recent if d > noise) - sum(1 for d in recent if d < -noise)
    return min(1.0, max(0.0, net_ups / (window * ups / m)))


def _leak_score_of(
    values: Sequence[float],
    reference_bytes: float,
    noise_bytes: float,
    warmup: int | None,
) -> float:
    """Leak score of already time-sorted byte values (see module docstring)."""
    n = len(values)
    if warmup is None:
        warmup = max(1, n // 5) if n >= 5 else 0
    kept = values[max(0, warmup):]
    if len(kept) < 3:
        return 0.0
    noise = max(0.0, noise_bytes)
    net = kept[-1] - kept[0]
    if not net > noise:  # also rejects NaN from inf - inf
        return 0.0
    deltas = [b - a for a, b in zip(kept, kept[1:])]
    m = len(deltas)
    persistence = _persistence(deltas, noise)
    if persistence == 0.0:
        return 0.0
    recency = _recency(deltas, noise)
    if recency == 0.0:
        return 0.0
    # Halving first keeps b - a finite even for values near the float limits.
    travelled = _sum(abs(b / 2 - a / 2) for a, b in zip(kept, kept[1:]))
    efficiency = (kept[-1] / 2 - kept[0] / 2) / travelled if travelled > 0 else 0.0
    consistency = math.sqrt(min(1.0, max(0.0, efficiency)))
    if reference_bytes > 0:
        unit = reference_bytes / 1024
        per_step = net / m
        magnitude = min(1.0, math.log1p(per_step / unit) / math.log1p(1024.0))
    else:
        magnitude = 1.0
    score = persistence * recency * consistency * magnitude
    if math.isnan(score):
        return 0.0
    return round(min(1.0, max(0.0, score)), 4)


def leak_score(
    history: History,
    *,
    reference_bytes: float = 1_048_576.0,
    noise_bytes: float = 0.0,
    warmup: int | None = None,
) -> float:
    """Score in [0, 1] of how leak-like a history is (defined in module doc).

    A product of persistence (sign test over steps), recency (still growing
    at the end), consistency (net growth vs distance travelled) and magnitude (log scale of bytes per step vs
    ``reference_bytes``), so noise, sawtooths, one-off steps and plateaus
    score ~0 while steady growth scores high.
    """
    values = [b for _, b in _sorted(history)]
    return _leak_score_of(values, reference_bytes, noise_bytes, warmup)


def detect_leak(
    history: History, *, threshold: float = 0.1, **score_kwargs: float
) -> tuple[bool, float]:
    """Return (is_leaking, score); a zero score is never a leak, whatever threshold."""
    score = leak_score(history, **score_kwargs)  # type: ignore[arg-type]
    return (is_leaking(score, threshold), score)


@dataclass(frozen=True)
class HistoryAnalysis:
    """Everything the loader shows for one history, computed in one call."""

    statistics: dict[str, float]
    trend: str
    leak_score: float
    is_leaking: bool


def analyze(
    history: History,
    *,
    threshold: float = 0.1,
    reference_bytes: float = 1_048_576.0,
    noise_bytes: float = 0.0,
) -> HistoryAnalysis:
    """Statistics, trend and leak verdict sorting the history only once.

    O(n log n): the loader calls this on every metrics update.
    """
    points = _sorted(history)
    values = [b for _, b in points]
    score = _leak_score_of(values, reference_bytes, noise_bytes, None)
    return HistoryAnalysis(
        statistics=memory_statistics(points),
        trend=_trend_of(values, noise_bytes),
        leak_score=score,
        is_leaking=is_leaking(score, threshold),
    )
