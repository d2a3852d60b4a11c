"""Package data across processes (pytest-xdist): export from a worker, merge on the controller.

Each worker process imports its own copy of every package, so merged figures are totals over processes:
``current``/``peak``/``footprint`` are sums of the workers' figures, and the merged history is, at each reading time
of any worker, the sum of every worker's latest reading at or before that time (a step function per worker, added
up). The leak score and trend are then computed on that merged history like on any other: a package growing in
one worker grows the total; workers that start late add one step, which the score treats as a one-off.

CI shards are combined the same way (``pytest-memtrack merge``): :func:`records_from_report` turns a shard's saved
report into the records a worker sends, and :func:`import_packages` merges them like workers'.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.tracking.metrics import MemoryMetrics, PackageInfo
from pytest_memtrack.tracking.payloads import PRESSURE_LEVELS


def export_packages(loader: LazyLoader) -> list[dict[str, Any]]:
    """Plain-typed package records (what xdist can send through ``workeroutput``)."""
    records = []
    for info in loader.packages():
        with info.lock:
            m = info.memory_metrics
            records.append({
                "name": info.name, "status": info.status, "observed": info.observed, "error": info.error,
                "load_time": info.load_time, "footprint": m.memory_footprint, "peak": m.peak_memory_usage,
                "pressure": m.memory_pressure_level, "checks": m.memory_check_count,
                "history": [[t, b] for t, b in m.memory_history],
                "leak_tests": dict(m.leak_tests),
            })
    return records


def merge_histories(histories: list[list[list[float]]], limit: int) -> list[tuple[float, float]]:
    """Sum of step functions: at each reading time, every process's latest reading so far, added up."""
    series = [sorted((float(t), float(b)) for t, b in h) for h in histories if h]
    times = sorted({t for s in series for t, _ in s})
    merged = []
    for t in times:
        total = 0.0
        for s in series:
            i = bisect.bisect_right(s, (t, float("inf"))) - 1
            if i >= 0:
                total += s[i][1]
        merged.append((t, total))
    return merged[-limit:]


def records_from_report(report: Mapping[str, Any], shift: float = 0.0) -> list[dict[str, Any]]:
    """The package records of a saved report (one CI shard), as :func:`export_packages` makes them in a worker,
    with the history's times moved by ``shift`` seconds.

    A report keeps the names of the hunted tests charged to a package but not each charge, so each is charged the
    package's leak score: the highest charge, and so the merged score, stay what they were.
    """
    histories = report.get("package_histories") or {}
    records = []
    for name, entry in (report.get("packages") or {}).items():
        m = entry.get("memory_metrics") or {}
        history = histories.get(name)
        if history is None:  # a report without histories: its last reading is the one point known
            known = m.get("last_memory_check") is not None and m.get("current_memory_usage") is not None
            history = [[m["last_memory_check"], m["current_memory_usage"]]] if known else []
        score = float(m.get("memory_leak_score") or 0.0)
        pressure = m.get("memory_pressure_level")
        records.append({
            "name": name, "status": entry.get("status") or "registered", "observed": True, "error": None,
            "load_time": None, "footprint": m.get("memory_footprint"), "peak": m.get("peak_memory_usage"),
            "pressure": pressure if pressure in PRESSURE_LEVELS else "low",
            "checks": int(m.get("memory_check_count") or 0),
            "history": [[point[0] + shift, point[1]] for point in history],
            "leak_tests": dict.fromkeys(entry.get("leak_tests") or [], score),
        })
    return records


_STATUS_RANK = {"loaded": 4, "failed": 3, "loading": 2, "unloaded": 1, "registered": 0}


def import_packages(worker_data: list[dict[str, Any]], like: LazyLoader) -> LazyLoader:
    """A loader (not observing anything) holding the merged packages of all workers."""
    merged = LazyLoader(like.monitor, history_size=like.history_size, leak_threshold=like.leak_threshold,
                        rules=like.rules)
    merged.left_out.update(like.left_out)
    merged.room, merged.auto_unload = like.room, like.auto_unload  # the controller's limit, RSS readings, unloads
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in worker_data:
        for record in data.get("packages", []):
            by_name[record["name"]].append(record)
    for name, records in sorted(by_name.items()):
        metrics = MemoryMetrics(max_history=like.history_size)
        history = merge_histories([r["history"] for r in records], like.history_size)
        info = PackageInfo(name=name, monitor=like.monitor, memory_metrics=metrics,
                           status=max((r["status"] for r in records), key=lambda s: _STATUS_RANK.get(s, 0)),
                           observed=all(r["observed"] for r in records),
                           error=next((r["error"] for r in records if r["error"]), None),
                           load_time=max((r["load_time"] or 0.0 for r in records), default=None))
        metrics.memory_history = list(history)
        if history:
            metrics.current_memory_usage = history[-1][1]
            metrics.last_memory_check = history[-1][0]
        peaks = [r["peak"] for r in records if r["peak"] is not None]
        metrics.peak_memory_usage = sum(peaks) if peaks else None
        footprints = [r["footprint"] for r in records if r["footprint"] is not None]
        metrics.memory_footprint = sum(footprints) if footprints else None
        metrics.memory_check_count = sum(r["checks"] for r in records)
        levels = [r["pressure"] for r in records]
        metrics.memory_pressure_level = max(levels, key=PRESSURE_LEVELS.index)
        for record in records:
            metrics.leak_tests.update(record.get("leak_tests") or {})
        metrics.reanalyze(like.monitor)
        merged._packages[name] = info
    return merged
