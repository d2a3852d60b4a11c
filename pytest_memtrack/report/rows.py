"""The two tables of the report and the dashboard, as display-ready rows: every test, every package.

The tests table of a large suite is not HTML rows: it is one JSON block the page's script pages through
(``PAGE_SIZE`` rows at a time), so a 10,000-test report builds a few thousand elements, not 100,000. The first page
is also rendered as HTML, so the page reads without JavaScript. Package rows carry their history chart (zero
baseline) and the time to their memory limit when the package payload has a ``forecast``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_memtrack.report.charts import axis_chart
from pytest_memtrack.report.formatting import format_bytes, format_duration, format_score, format_signed_bytes
from pytest_memtrack.report.verdict import KINDS, is_hunted, lead_kind, per_run_text
from pytest_memtrack.tracking.payloads import is_leaking
from pytest_memtrack.units import MISSING, finite_number

#: Rows of the tests table per page (and rendered as HTML for readers without JavaScript).
PAGE_SIZE = 200
#: The fields of one row of the JSON block, in order (the script reads them by position: small files).
TEST_COLUMNS = ("nodeid", "outcome", "duration", "duration_raw", "rss_delta", "rss_delta_raw", "score", "score_raw",
                "per_run", "kind", "hunted", "leaking", "anchor")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _rounded(value: Any, digits: int) -> float | None:
    number = finite_number(value)
    return None if number is None else round(number, digits)


def row_of_test(test: Mapping[str, Any], anchor: str = "") -> dict[str, Any]:
    kinds = _dict(_dict(test.get("hunt")).get("kinds"))
    lead = lead_kind(test)
    leaking = bool(test.get("leaking"))
    return {
        "nodeid": str(test.get("nodeid", "?")),
        "outcome": str(test.get("outcome") or "?"),
        "duration": format_duration(test.get("duration")),
        "duration_raw": _rounded(test.get("duration"), 4),
        "rss_delta": format_signed_bytes(test.get("rss_delta")),
        "rss_delta_raw": _rounded(test.get("rss_delta"), 0),
        "score": format_score(test.get("leak_score")),
        "score_raw": _rounded(test.get("leak_score"), 4),
        # The headline amount is the leading kind's, in its unit ("1 thread per run", "+3.8 KiB per run").
        "per_run": per_run_text(lead, _dict(kinds.get(lead)).get("per_run")) if lead else MISSING,
        # The kind a leaking test leaks by (the filter's "kind"); a test that did not leak has none.
        "kind": (lead or "") if leaking else "",
        "hunted": is_hunted(test),
        "leaking": leaking,
        "anchor": anchor,
    }


def _sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (not row["leaking"], -(row["score_raw"] if row["score_raw"] is not None else -1.0),
            -(row["rss_delta_raw"] or 0.0), row["nodeid"])


def table_of_tests(tests: Sequence[Mapping[str, Any]], anchors: Mapping[str, str]) -> dict[str, Any]:
    """Rows leaking first, then by score and RSS delta; the first page; the counts each filter shows."""
    rows = sorted((row_of_test(t, anchors.get(str(t.get("nodeid")), "")) for t in tests), key=_sort_key)
    outcomes = Counter(r["outcome"] for r in rows)
    kinds = Counter(r["kind"] for r in rows if r["kind"])
    return {
        "rows": rows[:PAGE_SIZE],
        "total": len(rows),
        "page_size": PAGE_SIZE,
        "outcomes": [(name, outcomes[name]) for name in [*OUTCOMES, *sorted(set(outcomes) - set(OUTCOMES))]
                     if outcomes[name]],
        "kinds": [(name, kinds[name]) for name, _ in KINDS if kinds[name]],
        "hunted": sum(1 for r in rows if r["hunted"]),
        "leaking": sum(1 for r in rows if r["leaking"]),
        "data": tests_json(rows),
    }


def tests_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a JSON block safe inside ``<script type="application/json">`` (no ``<``, ``>`` or ``&``)."""
    text = json.dumps({"columns": TEST_COLUMNS, "rows": [[row[c] for c in TEST_COLUMNS] for row in rows]},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def time_to_limit(entry: Mapping[str, Any]) -> str:
    """The package's forecast in words: ``4 min 10 s``; ``—`` without a forecast or when it is not growing."""
    forecast = entry.get("forecast")
    if not isinstance(forecast, Mapping):
        return MISSING
    seconds = finite_number(forecast.get("seconds_to_limit"))
    return MISSING if seconds is None else format_duration(seconds)


def package_rows(report: Mapping[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Leaking packages first, then by score and current memory."""
    histories = _dict(report.get("package_histories"))
    leaking_names = {str(_dict(leak).get("package_name")) for leak in _list(_dict(report.get("leaks")).get("leaks"))}
    rows = []
    for key, entry in _dict(report.get("packages")).items():
        entry = _dict(entry)
        name = str(entry.get("package_name") or key)
        metrics = _dict(entry.get("memory_metrics"))
        score = finite_number(metrics.get("memory_leak_score"))
        growth = finite_number(metrics.get("memory_growth_rate"))
        rows.append({
            "name": name,
            "status": str(entry.get("status") or ("loaded" if entry.get("is_loaded") else "unknown")),
            "current": format_bytes(metrics.get("current_memory_usage")),
            "current_raw": finite_number(metrics.get("current_memory_usage")) or 0.0,
            "peak": format_bytes(metrics.get("peak_memory_usage")),
            "peak_raw": finite_number(metrics.get("peak_memory_usage")) or 0.0,
            "footprint": format_bytes(metrics.get("memory_footprint")),
            "footprint_raw": finite_number(metrics.get("memory_footprint")) or 0.0,
            "trend": str(metrics.get("memory_trend") or MISSING),
            "growth": format_signed_bytes(growth) + "/s" if growth is not None else MISSING,
            "growth_raw": growth or 0.0,
            "time_to_limit": time_to_limit(entry),
            "time_to_limit_raw": finite_number(_dict(entry.get("forecast")).get("seconds_to_limit")),
            "tests": [str(t) for t in _list(entry.get("leak_tests"))],
            "score": format_score(score),
            "score_raw": -1.0 if score is None else score,
            "leaking": name in leaking_names or (score is not None and is_leaking(score, threshold)),
            "chart": axis_chart(_list(histories.get(key)), 200, 44, zero_baseline=True, x_axis="time"),
        })
    rows.sort(key=lambda r: (not r["leaking"], -r["score_raw"], -r["current_raw"], r["name"]))  # type: ignore[operator]
    return rows
