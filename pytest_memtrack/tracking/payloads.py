"""The spec's payloads (summary, leaks, suggestions) and the one rule that says a package is leaking.

Every surface reads these: the loader's methods (and through them the live server), the report model, the
saved-report server source and the HTML page. Built from package payloads (the spec's package memory info, as
``PackageInfo.get_memory_summary`` returns and a saved report's ``packages`` keeps), so a live loader and a
saved report give the same answer for the same figures. Nothing here imports the rest of the tracker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The spec's vocabulary.
TRENDS = ("increasing", "decreasing", "stable")
PRESSURE_LEVELS = ("low", "medium", "high", "critical")
SEVERITIES = ("high", "medium", "low")


def is_leaking(score: float, threshold: float) -> bool:
    """A package (or history) is leaking when its leak score reaches the threshold; a zero score never is,
    whatever the threshold (a threshold of 0 must not flag every package)."""
    return score > 0 and score >= threshold


def _metrics(package: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = package.get("memory_metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def _score(metrics: Mapping[str, Any]) -> float:
    return float(metrics.get("memory_leak_score") or 0.0)


def leak_entries(packages: Mapping[str, Mapping[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """The spec's leak entries of the packages that are leaking at ``threshold``, highest score first."""
    leaks = []
    for key, package in packages.items():
        metrics = _metrics(package)
        score = _score(metrics)
        if not is_leaking(score, threshold):
            continue
        leaks.append({
            "package_name": package.get("package_name", key), "leak_score": score,
            "memory_trend": metrics.get("memory_trend", "stable"),
            "memory_growth_rate": metrics.get("memory_growth_rate", 0.0),
            "current_memory_usage": metrics.get("current_memory_usage"),
            "peak_memory_usage": metrics.get("peak_memory_usage"),
            "memory_footprint": metrics.get("memory_footprint"),
            "memory_check_count": metrics.get("memory_check_count", 0),
            "last_memory_check": metrics.get("last_memory_check"),
            "tests": list(package.get("leak_tests") or []),
        })
    return sorted(leaks, key=lambda leak: (-leak["leak_score"], leak["package_name"]))


def leaks_payload(packages: Mapping[str, Mapping[str, Any]], threshold: float, detection_time: float) -> dict[str, Any]:
    """The data of ``GET /api/packages/memory/leaks?threshold=...``."""
    leaks = leak_entries(packages, threshold)
    return {"leaks": leaks, "total_leaks": len(leaks), "threshold": threshold, "detection_time": detection_time}


def summary_payload(packages: Iterable[Mapping[str, Any]], leak_threshold: float,
                    system_pressure: str) -> dict[str, Any]:
    """The data of ``GET /api/packages/memory/summary``."""
    packages = list(packages)
    metrics = [_metrics(p) for p in packages]
    return {
        "total_current_memory": sum(m.get("current_memory_usage") or 0.0 for m in metrics),
        "total_peak_memory": sum(m.get("peak_memory_usage") or 0.0 for m in metrics),
        "total_memory_footprint": sum(m.get("memory_footprint") or 0.0 for m in metrics),
        "packages_with_leaks": [
            {"package_name": p.get("package_name"), "leak_score": _score(m),
             "trend": m.get("memory_trend", "stable"), "growth_rate": m.get("memory_growth_rate", 0.0),
             **({"forecast": p["forecast"]} if isinstance(p.get("forecast"), Mapping) else {})}
            for p, m in zip(packages, metrics) if is_leaking(_score(m), leak_threshold)
        ],
        "memory_trends": {t: sum(1 for m in metrics if m.get("memory_trend") == t) for t in TRENDS},
        "memory_pressure_levels": {level: sum(1 for m in metrics if m.get("memory_pressure_level") == level)
                                   for level in PRESSURE_LEVELS},
        "system_memory_pressure": system_pressure,
        "total_packages": len(packages),
        "loaded_packages": sum(1 for p in packages if p.get("is_loaded")),
    }


def suggestions_payload(suggestions: list[dict[str, Any]], generation_time: float) -> dict[str, Any]:
    """The data of ``GET /api/packages/memory/optimization-suggestions``."""
    counts = {level: sum(1 for s in suggestions if s["severity"] == level) for level in SEVERITIES}
    return {"suggestions": suggestions, "total_suggestions": len(suggestions),
            "high_severity": counts["high"], "medium_severity": counts["medium"], "low_severity": counts["low"],
            "generation_time": generation_time}

