"""Optimization suggestions: pure rules over package figures, each with a documented severity.

| type                   | when                                                     | severity                        |
|------------------------|----------------------------------------------------------|---------------------------------|
| memory_leak            | the leak score reaches the threshold (``is_leaking``)    | high if score >= 0.3, else med. |
| high_memory_footprint  | import footprint >= footprint threshold (default 50 MiB) | high if >= 5x threshold, else m.|
| system_memory_pressure | the system's memory pressure is high or critical         | high when critical, else medium |
| unused_package         | loaded lazily, unused for >= unused_after (default 600 s)| low                             |
| growing_trend          | trend increasing, leak score below the leak threshold    | low                             |
| memory_limit_forecast  | the forecast (``forecast``) reaches the memory limit     | high if within 5 min, else med. |
|                        | within forecast_horizon (default 1 h), confidence >= 0.5 | (package, or null: the process) |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_memtrack.tracking.forecast import Forecast
from pytest_memtrack.tracking.payloads import is_leaking
from pytest_memtrack.units import format_duration

MIB = 1024 * 1024


@dataclass(frozen=True)
class SuggestionRules:
    leak_threshold: float = 0.1
    footprint_bytes: float = 50 * MIB
    unused_after: float = 600.0
    forecast_horizon: float = 3600.0
    forecast_confidence: float = 0.5


@dataclass(frozen=True)
class PackageFigures:
    """What the rules read of one package (a plain snapshot, so the rules stay pure)."""

    name: str
    status: str
    leak_score: float
    trend: str
    footprint: float | None
    last_used: float | None
    lazily_loaded: bool
    forecast: Forecast | None = None


def _suggestion(kind: str, package: str | None, severity: str, message: str, recommendation: str,
                value: float) -> dict[str, Any]:
    return {"type": kind, "package_name": package, "severity": severity, "message": message,
            "recommendation": recommendation, "value": value}


def _limit_forecast(package: str | None, forecast: Forecast | None, rules: SuggestionRules) -> dict[str, Any] | None:
    """The ``memory_limit_forecast`` suggestion, when the forecast is near and confident enough."""
    if forecast is None or forecast.seconds_to_limit is None or forecast.confidence is None:
        return None
    seconds = forecast.seconds_to_limit
    if seconds > rules.forecast_horizon or forecast.confidence < rules.forecast_confidence:
        return None
    who = f"Package '{package}'" if package else "The process"
    return _suggestion(
        "memory_limit_forecast", package, "high" if seconds <= 300 else "medium",
        f"{who} reaches the memory limit ({forecast.limit_bytes / MIB:.0f}MB) in about {format_duration(seconds)} "
        f"at its current growth (confidence {forecast.confidence:.2f})",
        "Find what keeps growing (hunt the tests that use it) or raise the memory budget", seconds)


def suggest(packages: Iterable[PackageFigures], system_pressure: str, now: float,
            rules: SuggestionRules = SuggestionRules(),
            process_forecast: Forecast | None = None) -> list[dict[str, Any]]:
    """Suggestions, most severe first (stable within a severity)."""
    found: list[dict[str, Any]] = []
    process = _limit_forecast(None, process_forecast, rules)
    if process is not None:
        found.append(process)
    if system_pressure in ("high", "critical"):
        found.append(_suggestion(
            "system_memory_pressure", None, "high" if system_pressure == "critical" else "medium",
            f"System memory pressure is {system_pressure}",
            "Run garbage collection and unload packages that are not needed",
            0.0 if system_pressure == "high" else 1.0))
    for p in packages:
        if is_leaking(p.leak_score, rules.leak_threshold):
            found.append(_suggestion(
                "memory_leak", p.name, "high" if p.leak_score >= 0.3 else "medium",
                f"Package '{p.name}' shows signs of memory leak (score: {p.leak_score:.2f})",
                "Investigate memory usage patterns and consider reloading", p.leak_score))
        elif p.trend == "increasing":
            found.append(_suggestion(
                "growing_trend", p.name, "low", f"Package '{p.name}' memory is increasing (score: {p.leak_score:.2f})",
                "Watch this package; bound its caches if the growth continues", p.leak_score))
        near = _limit_forecast(p.name, p.forecast, rules)
        if near is not None:
            found.append(near)
        if p.footprint is not None and p.footprint >= rules.footprint_bytes:
            found.append(_suggestion(
                "high_memory_footprint", p.name, "high" if p.footprint >= 5 * rules.footprint_bytes else "medium",
                f"Package '{p.name}' has high memory footprint: {p.footprint / MIB:.1f}MB",
                "Consider unloading if not frequently used", p.footprint))
        if (p.lazily_loaded and p.status == "loaded" and p.last_used is not None
                and now - p.last_used >= rules.unused_after):
            idle = now - p.last_used
            found.append(_suggestion(
                "unused_package", p.name, "low", f"Package '{p.name}' has not been used for {idle:.0f}s",
                "Unload it to free its memory; it loads again on next use", idle))
    order = {"high": 0, "medium": 1, "low": 2}
    return sorted(found, key=lambda s: order[s["severity"]])
