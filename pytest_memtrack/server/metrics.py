"""``GET /metrics``: the API's payloads in the Prometheus text exposition format (version 0.0.4).

A pure renderer: it reads the summary payload, the package payloads and the session's test counts -- what the JSON
API serves from the same source, live or from a saved report -- and writes no figure of its own. Names follow
Prometheus' conventions: a ``memtrack_`` prefix, base units in the name (``_bytes``, ``_seconds``), ``_total`` only
on counters. A figure the payload does not have (no reading yet, no forecast, a report written before the figure
existed) is left out rather than written as 0.

Families (``package`` label: the tracked package's name; ``level``: a pressure level)::

    memtrack_package_memory_current_bytes{package}          gauge   module-state bytes at the last reading
    memtrack_package_memory_peak_bytes{package}             gauge   highest reading
    memtrack_package_memory_footprint_bytes{package}        gauge   bytes the import allocated and kept
    memtrack_package_leak_score{package}                    gauge   0..1
    memtrack_package_memory_growth_bytes_per_second{package} gauge  least-squares slope of the history
    memtrack_package_loaded{package}                        gauge   1 when loaded
    memtrack_package_time_to_memory_limit_seconds{package}  gauge   forecast; only when the trend increases
    memtrack_package_forecast_confidence{package}           gauge   0..1, with the above
    memtrack_process_resident_memory_bytes                  gauge   RSS when the summary was made
    memtrack_memory_limit_bytes                             gauge   the forecasts' limit
    memtrack_process_memory_growth_bytes_per_second         gauge
    memtrack_process_time_to_memory_limit_seconds           gauge   only when the process's trend increases
    memtrack_process_forecast_confidence                    gauge
    memtrack_system_memory_pressure{level}                  gauge   1 for the current level, 0 for the others
    memtrack_packages_tracked / memtrack_packages_loaded    gauge
    memtrack_tests_run_total / _hunted_total / _leaking_total  counter  the session's tests
    memtrack_auto_unload_freed_packages_total / _not_freed_packages_total / _freed_bytes_total  counter
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_memtrack.tracking.payloads import PRESSURE_LEVELS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], Any]


def escape_label(value: str) -> str:
    """A label value as the exposition format writes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, ``+Inf``/``-Inf``/``NaN`` spelled as Prometheus reads them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = []
    for labels, raw in samples:
        value = _number(raw)
        if value is None:
            continue
        label_text = ",".join(f'{key}="{escape_label(str(item))}"' for key, item in labels.items())
        lines.append(f"{name}{{{label_text}}} {format_value(value)}" if label_text else f"{name} {format_value(value)}")
    if not lines:
        return []
    return [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}", *lines]


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, Mapping) else None
    return mapping


_PACKAGE_GAUGES = (
    ("memtrack_package_memory_current_bytes", ("memory_metrics", "current_memory_usage"),
     "Module-state bytes of the package at the last reading (sys.getsizeof over what its module globals reach)."),
    ("memtrack_package_memory_peak_bytes", ("memory_metrics", "peak_memory_usage"),
     "Highest module-state reading of the package."),
    ("memtrack_package_memory_footprint_bytes", ("memory_metrics", "memory_footprint"),
     "Bytes the package's import allocated and still held when it finished (tracemalloc, else RSS growth)."),
    ("memtrack_package_leak_score", ("memory_metrics", "memory_leak_score"),
     "Leak score of the package, 0..1 (its history's, or the hunts charged to it)."),
    ("memtrack_package_memory_growth_bytes_per_second", ("memory_metrics", "memory_growth_rate"),
     "Least-squares growth rate of the package's readings, bytes per second."),
    ("memtrack_package_loaded", ("is_loaded",), "1 when the package is loaded, else 0."),
    ("memtrack_package_time_to_memory_limit_seconds", ("forecast", "seconds_to_limit"),
     "Seconds until the package's growth alone uses up the headroom to the memory limit (only while it grows)."),
    ("memtrack_package_forecast_confidence", ("forecast", "confidence"),
     "Confidence of the package's forecast, 0..1 (r squared of the fit times a factor for few readings)."),
)


def render_metrics(summary: Mapping[str, Any], packages: Mapping[str, Mapping[str, Any]],
                   tests: Mapping[str, int] | None = None) -> str:
    """The ``/metrics`` text for a summary payload, the package payloads by name and the session's test counts
    (``report.verdict.count_tests``; None: unknown, left out)."""
    names = sorted(packages)
    lines: list[str] = []
    for name, keys, help_text in _PACKAGE_GAUGES:
        lines += _family(name, "gauge", help_text, (({"package": n}, _get(packages[n], *keys)) for n in names))
    process = summary.get("process_forecast")
    lines += _family("memtrack_process_resident_memory_bytes", "gauge",
                     "Resident set size of the tested process.",
                     [({}, summary.get("process_memory_usage"))])
    lines += _family("memtrack_memory_limit_bytes", "gauge",
                     "The process's memory limit the forecasts use: the configured budget, else RSS plus the "
                     "system's available memory.", [({}, _get(process, "limit_bytes"))])
    lines += _family("memtrack_process_memory_growth_bytes_per_second", "gauge",
                     "Least-squares growth rate of the process's RSS readings, bytes per second.",
                     [({}, _get(process, "growth_rate"))])
    lines += _family("memtrack_process_time_to_memory_limit_seconds", "gauge",
                     "Seconds until the process reaches the memory limit at its current growth (only while it grows).",
                     [({}, _get(process, "seconds_to_limit"))])
    lines += _family("memtrack_process_forecast_confidence", "gauge",
                     "Confidence of the process's forecast, 0..1.", [({}, _get(process, "confidence"))])
    pressure = summary.get("system_memory_pressure")
    if pressure in PRESSURE_LEVELS:
        lines += _family("memtrack_system_memory_pressure", "gauge",
                         "System memory pressure: 1 for the current level (share of the system's memory in use against "
                         "the thresholds), 0 for the others.",
                         [({"level": level}, int(level == pressure)) for level in PRESSURE_LEVELS])
    lines += _family("memtrack_packages_tracked", "gauge", "Packages the tracker knows.",
                     [({}, summary.get("total_packages"))])
    lines += _family("memtrack_packages_loaded", "gauge", "Tracked packages that are loaded.",
                     [({}, summary.get("loaded_packages"))])
    if tests is not None:
        for key, help_text in (("run", "Tests of the session that ran (reported)."),
                               ("hunted", "Tests repeated to measure a leak score (hunted)."),
                               ("leaking", "Hunted tests whose leak score exceeded their limit.")):
            lines += _family(f"memtrack_tests_{key}_total", "counter", help_text, [({}, tests.get(key))])
    unload = summary.get("auto_unload")
    if isinstance(unload, Mapping) and unload.get("enabled"):
        lines += _family("memtrack_auto_unload_freed_packages_total", "counter",
                         "Idle lazy packages unloaded and freed under high memory pressure.",
                         [({}, len(unload.get("freed") or []))])
        lines += _family("memtrack_auto_unload_not_freed_packages_total", "counter",
                         "Idle lazy packages that could not be freed (still referenced) and were kept.",
                         [({}, len(unload.get("not_freed") or []))])
        lines += _family("memtrack_auto_unload_freed_bytes_total", "counter",
                         "Module-state bytes the freed packages held.", [({}, unload.get("bytes_freed"))])
    return "\n".join(lines) + "\n"
