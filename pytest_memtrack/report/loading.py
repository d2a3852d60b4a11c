"""The one reader of saved JSON reports, for every command that takes one (``html``, ``serve``, ``compare``).

One validation: the file is readable UTF-8 JSON of finite numbers, says it is a pytest-memtrack report of format
version 1, and carries, with the right types, everything a renderer or the server reads: the summary's figures, each
package's entry and metrics, the tests, the leaks and suggestions sections. Each way it can be wrong is a
``ReportError`` sentence naming the file and the first field that is wrong, so no reader meets a value it cannot
handle (the server would answer 500, ``compare`` would crash). It is not the JSON Schema (``jsonschema`` is a test
dependency only): it checks what is read, and lets extra keys through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from pytest_memtrack.errors import ReportError

FORMAT_VERSION = 1
#: The sections a renderer or the server reads, with their JSON types.
SECTIONS: tuple[tuple[str, type], ...] = (("run", dict), ("summary", dict), ("leaks", dict), ("suggestions", dict),
                                          ("packages", dict), ("tests", list))


class _NotFinite(ValueError):
    """Infinity, -Infinity, NaN or a number beyond a float in the JSON text (Python's parser accepts them all)."""


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text if len(text) <= 30 else text[:29] + "…")
    return value


def load_report(path: str) -> dict[str, Any]:
    """Read and check a saved report; raises ``ReportError`` with a sentence."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ReportError(f"cannot read the report {path!r}: it does not exist.") from None
    except IsADirectoryError:
        raise ReportError(f"cannot read the report {path!r}: it is a directory, not a JSON report file.") from None
    except UnicodeDecodeError:
        raise ReportError(f"cannot read the report {path!r}: it is not UTF-8 text.") from None
    except OSError as exc:
        raise ReportError(f"cannot read the report {path!r}: {exc.strerror or exc}.") from None
    try:
        report = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        raise ReportError(f"{path!r} is not a valid pytest-memtrack JSON report: it contains {exc}, which is not "
                          "a finite number (a report holds finite numbers only).") from None
    except RecursionError:
        raise ReportError(f"{path!r} is not a valid pytest-memtrack JSON report: it is nested too deeply.") from None
    except ValueError as exc:
        raise ReportError(f"{path!r} is not valid JSON ({exc}).") from None
    return check_report(report, repr(path))


def check_report(report: Any, origin: str) -> dict[str, Any]:
    """``report`` when it is a pytest-memtrack report this version reads, else ``ReportError`` naming ``origin``."""
    tool = report.get("tool") if isinstance(report, dict) else None
    if not isinstance(tool, dict) or tool.get("name") != "pytest-memtrack":
        raise ReportError(f"{origin} is not a pytest-memtrack JSON report (write one with pytest --memtrack "
                          "--memtrack-json=PATH).")
    if report.get("format_version") != FORMAT_VERSION:
        raise ReportError(f"{origin} has report format version {report.get('format_version')!r}; this version of "
                          f"pytest-memtrack reads format version {FORMAT_VERSION}.")
    missing = [name for name, kind in SECTIONS if not isinstance(report.get(name), kind)]
    if missing:
        raise ReportError(f"{origin} is not a complete pytest-memtrack JSON report (missing or malformed: "
                          f"{', '.join(missing)}).")
    try:
        _check_sections(report)
    except _Wrong as wrong:
        raise ReportError(f"{origin} is not a valid pytest-memtrack JSON report: {wrong}.") from None
    return report


# -- the fields the readers read -----------------------------------------------------------------------------------


class _Wrong(Exception):
    """``where`` (a JSON path such as ``packages['numpy'].memory_metrics``) ``problem``: one clause of the sentence."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number" if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return _is_number(value) and value >= 0 and float(value).is_integer()


#: Field checks: (test, what the field must be).
_Check = tuple[Callable[[Any], bool], str]
NUMBER: _Check = (_is_number, "a finite number")
NUMBER_OR_NULL: _Check = (lambda v: v is None or _is_number(v), "a finite number or null")
COUNT: _Check = (_is_count, "a whole number of at least 0")
COUNT_OR_NULL: _Check = (lambda v: v is None or _is_count(v), "a whole number of at least 0 or null")
STRING: _Check = (lambda v: isinstance(v, str), "a string")
STRING_OR_NULL: _Check = (lambda v: v is None or isinstance(v, str), "a string or null")
BOOL: _Check = (lambda v: isinstance(v, bool), "true or false")
OBJECT: _Check = (lambda v: isinstance(v, dict), "an object")
OBJECT_OR_NULL: _Check = (lambda v: v is None or isinstance(v, dict), "an object or null")
LIST: _Check = (lambda v: isinstance(v, list), "a list")


def _path(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{key!r}]"


def _value(value: Any, where: str, check: _Check) -> Any:
    test, what = check
    if not test(value):
        raise _Wrong(f"{where} is {_kind(value)}, not {what}")
    return value


def _fields(obj: dict[str, Any], where: str, required: dict[str, _Check],
            optional: dict[str, _Check] | None = None) -> None:
    """Every ``required`` key present with its type; every ``optional`` key that is present with its type."""
    for key, check in required.items():
        if key not in obj:
            raise _Wrong(f"{_path(where, key)} is missing")
        _value(obj[key], _path(where, key), check)
    for key, check in (optional or {}).items():
        if key in obj:
            _value(obj[key], _path(where, key), check)


def _objects(items: list[Any], where: str) -> list[dict[str, Any]]:
    for index, item in enumerate(items):
        _value(item, _path(where, index), OBJECT)
    return items


_SUMMARY = {"total_current_memory": NUMBER, "total_peak_memory": NUMBER, "total_memory_footprint": NUMBER,
            "packages_with_leaks": LIST, "memory_trends": OBJECT, "memory_pressure_levels": OBJECT,
            "system_memory_pressure": STRING, "total_packages": COUNT, "loaded_packages": COUNT}
_SUMMARY_LEAK = {"package_name": STRING, "leak_score": NUMBER, "trend": STRING, "growth_rate": NUMBER}
_TRENDS = ("increasing", "decreasing", "stable")
_PRESSURE_LEVELS = ("low", "medium", "high", "critical")
_METRICS = {"current_memory_usage": NUMBER_OR_NULL, "peak_memory_usage": NUMBER_OR_NULL,
            "memory_footprint": NUMBER_OR_NULL, "memory_leak_score": NUMBER_OR_NULL,
            "memory_growth_rate": NUMBER_OR_NULL, "average_memory_usage": NUMBER_OR_NULL,
            "memory_variance": NUMBER_OR_NULL, "memory_check_count": COUNT_OR_NULL,
            "last_memory_check": NUMBER_OR_NULL, "memory_history_length": COUNT_OR_NULL,
            "memory_trend": STRING, "memory_pressure_level": STRING}
_PACKAGE = {"package_name": STRING, "is_loaded": BOOL, "status": STRING}
_TEST = {"outcome": STRING, "duration": NUMBER_OR_NULL, "worker": STRING_OR_NULL, "rss_before": NUMBER_OR_NULL,
         "rss_after": NUMBER_OR_NULL, "rss_delta": NUMBER_OR_NULL, "leak_score": NUMBER_OR_NULL,
         "limit": NUMBER_OR_NULL, "leaking": BOOL, "hunt": OBJECT_OR_NULL, "message": STRING_OR_NULL}
_HUNT = {"runs": COUNT, "warmup_runs": COUNT, "readings": LIST, "kinds": OBJECT, "evidence": OBJECT,
         "error": STRING_OR_NULL}
_KIND = {"leaking": BOOL, "score": NUMBER_OR_NULL, "per_run": NUMBER_OR_NULL}
_LEAK = {"package_name": STRING, "leak_score": NUMBER}
_SUGGESTION = {"severity": STRING, "package_name": STRING_OR_NULL, "type": STRING, "message": STRING,
               "recommendation": STRING}
_RUN = {"started": NUMBER_OR_NULL, "finished": NUMBER_OR_NULL, "duration": NUMBER_OR_NULL, "argv": LIST}


def _check_sections(report: dict[str, Any]) -> None:
    _fields(report["run"], "run", {}, _RUN)

    summary = report["summary"]
    _fields(summary, "summary", _SUMMARY)
    for index, leak in enumerate(_objects(summary["packages_with_leaks"], "summary.packages_with_leaks")):
        _fields(leak, f"summary.packages_with_leaks[{index}]", _SUMMARY_LEAK)
    _fields(summary["memory_trends"], "summary.memory_trends", dict.fromkeys(_TRENDS, COUNT))
    _fields(summary["memory_pressure_levels"], "summary.memory_pressure_levels", dict.fromkeys(_PRESSURE_LEVELS, COUNT))

    for name, entry in report["packages"].items():
        where = _path("packages", name)
        _value(entry, where, OBJECT)
        _fields(entry, where, {"memory_metrics": OBJECT}, _PACKAGE)
        _fields(entry["memory_metrics"], f"{where}.memory_metrics", {}, _METRICS)

    for index, test in enumerate(_objects(report["tests"], "tests")):
        where = _path("tests", index)
        _fields(test, where, {"nodeid": STRING}, _TEST)
        hunt = test.get("hunt")
        if hunt is not None:
            _fields(hunt, f"{where}.hunt", {}, _HUNT)
            _objects(hunt.get("readings", []), f"{where}.hunt.readings")
            for kind, verdict in hunt.get("kinds", {}).items():
                _value(verdict, _path(f"{where}.hunt.kinds", kind), OBJECT)
                _fields(verdict, _path(f"{where}.hunt.kinds", kind), {}, _KIND)

    leaks = report["leaks"]
    _fields(leaks, "leaks", {}, {"leaks": LIST, "threshold": NUMBER, "detection_time": NUMBER_OR_NULL})
    for index, leak in enumerate(_objects(leaks.get("leaks", []), "leaks.leaks")):
        _fields(leak, f"leaks.leaks[{index}]", {}, _LEAK)

    suggestions = report["suggestions"]
    _fields(suggestions, "suggestions", {"suggestions": LIST},
            {"total_suggestions": COUNT, "high_severity": COUNT, "medium_severity": COUNT, "low_severity": COUNT})
    for index, suggestion in enumerate(_objects(suggestions["suggestions"], "suggestions.suggestions")):
        _fields(suggestion, f"suggestions.suggestions[{index}]", {}, _SUGGESTION)

    histories = report.get("package_histories")
    if histories is not None:
        _value(histories, "package_histories", OBJECT)
        for name, points in histories.items():
            where = _path("package_histories", name)
            _value(points, where, LIST)
            for index, point in enumerate(points):
                if not (isinstance(point, list) and len(point) >= 2 and all(_is_number(v) for v in point[:2])):
                    raise _Wrong(f"{where}[{index}] is not a [timestamp, bytes] pair of finite numbers")
    _value(report.get("comparison"), "comparison", OBJECT_OR_NULL)
