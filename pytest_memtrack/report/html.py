"""The HTML report: one self-contained page rendered with Jinja from the report model (docs/report-format.md).

``build_view(report)`` turns the model into display-ready values (human units, SVG polyline points) with pure
functions; ``templates/report.html.jinja`` only lays them out through the one autoescaping environment
(``templates.environment``). The same ``render_html`` serves the ``--memtrack-html`` option and the offline
``pytest-memtrack html`` command.
"""

from __future__ import annotations

import shlex
from typing import Any

from pytest_memtrack.history.compare import FIGURES
from pytest_memtrack.report.atomic import write_text_atomic
from pytest_memtrack.report.cards import leak_cards, summary_of_test
from pytest_memtrack.report.formatting import (
    format_bytes,
    format_duration,
    format_number,
    format_signed_bytes,
    format_time,
)
from pytest_memtrack.report.rows import package_rows, table_of_tests
from pytest_memtrack.report.templates import environment, inline_script
from pytest_memtrack.report.verdict import HOW_TO_HUNT, headline, is_hunted, untracked_note
from pytest_memtrack.units import MISSING
from pytest_memtrack.units import finite_number as _number

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


_BYTE_WORDS = ("memory", "bytes", "rss", "footprint", "peak", "usage", "traced", "size", "current", "total")

#: Leak cards shown expanded; the rest sit in a <details> block (still readable with JavaScript off).
OPEN_LEAKS = 10


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _is_byte_figure(figure: str) -> bool:
    if figure in FIGURES:
        return bool(FIGURES[figure][1])
    return any(word in figure.lower() for word in _BYTE_WORDS)


def _format_list(values: list[Any]) -> str:
    if not values:
        return "none"
    return ", ".join(" ".join(str(v) for v in item.values()) if isinstance(item, dict) else str(item)
                     for item in values)


def _comparison(report: dict[str, Any]) -> dict[str, Any] | None:
    comparison = report.get("comparison")
    if not isinstance(comparison, dict):
        return None
    preferred = ["kind", "name", "figure", "baseline", "current", "change", "limit", "regressed"]
    rows = [_dict(r) for r in _list(comparison.get("rows"))]
    columns = [c for c in preferred if any(c in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    bytes_columns = {"baseline", "current", "change", "limit"}
    out_rows = []
    for row in rows:
        is_bytes = _is_byte_figure(str(row.get("figure", "")))
        cells = []
        for column in columns:
            value = row.get(column)
            if is_bytes and column in bytes_columns and _number(value) is not None:
                text = format_signed_bytes(value) if column == "change" else format_bytes(value)
            elif column == "change" and (_number(value) or 0.0) > 0:
                text = "+" + format_number(value)
            elif column == "regressed":
                text = "REGRESSED" if value else ("ok" if value is not None else MISSING)
            else:
                text = format_number(value)
            cells.append(text)
        out_rows.append({"cells": cells, "regressed": bool(row.get("regressed"))})
    out_rows.sort(key=lambda r: not r["regressed"])
    baseline = _dict(comparison.get("baseline"))
    extra = {k: v for k, v in comparison.items() if k not in ("baseline", "rows", "regressions")}
    return {
        "baseline": [(str(k), format_time(v) if k in ("started", "finished", "time", "timestamp") else format_number(v))
                     for k, v in baseline.items()],
        "columns": columns,
        "rows": out_rows,
        "regressions": comparison.get("regressions"),
        "label": (_plural(comparison["regressions"], "regression") if isinstance(comparison.get("regressions"), int)
                  else "regressions unknown"),
        "extra": [(str(k).replace("_", " "), _format_list(v) if isinstance(v, list) else format_number(v))
                  for k, v in extra.items()],
    }


def build_view(report: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, formatted; tolerant of missing keys so partial reports still render."""
    run, summary = _dict(report.get("run")), _dict(report.get("summary"))
    leaks_section = _dict(report.get("leaks"))
    threshold = _number(leaks_section.get("threshold"))
    threshold = 0.1 if threshold is None else threshold
    tests = [_dict(t) for t in _list(report.get("tests"))]
    leaking = [t for t in tests if t.get("leaking")]
    cards, anchors = leak_cards(tests, run.get("rootdir"), run.get("native_reading"))
    inconclusive = [t for t in tests if not t.get("leaking") and _dict(t.get("hunt")).get("error")]
    hunted = sum(1 for t in tests if is_hunted(t))
    packages = package_rows(report, threshold)
    leaking_packages = [p for p in packages if p["leaking"]]
    suggestions = [_dict(s) for s in _list(_dict(report.get("suggestions")).get("suggestions"))]
    suggestions.sort(key=lambda s: _SEVERITY_ORDER.get(str(s.get("severity")), 9))
    comparison = _comparison(report)
    regressions = comparison["regressions"] if comparison else None
    failed = sum(1 for t in tests if t.get("outcome") in ("failed", "error"))

    said = headline(report)
    verdict, tone = said.text, said.tone
    details = []
    if leaking_packages:
        details.append(f"{len(leaking_packages)} package{'s' if len(leaking_packages) != 1 else ''} growing "
                       f"(leak score ≥ {threshold:g})")
    if regressions and leaking:
        details.append(f"{regressions} regression{'s' if regressions != 1 else ''} against the baseline")
    if hunted:
        details.append(f"{hunted} test{'s' if hunted != 1 else ''} hunted for leaks")
    elif tests:
        details.append(f"To check tests for leaks, {HOW_TO_HUNT}")
    if failed:
        details.append(f"{failed} test{'s' if failed != 1 else ''} failed")
    pressure = str(summary.get("system_memory_pressure") or "unknown")
    return {
        "title": f"pytest-memtrack: {verdict}",
        "verdict": verdict,
        "tone": tone,
        "details": details,
        "pressure": pressure,
        "pressure_tone": {"low": "good", "medium": "warn", "high": "bad", "critical": "bad"}.get(pressure, "neutral"),
        "totals": [("current", format_bytes(summary.get("total_current_memory"))),
                   ("peak", format_bytes(summary.get("total_peak_memory"))),
                   ("footprint", format_bytes(summary.get("total_memory_footprint"))),
                   ("packages", f"{format_number(summary.get('loaded_packages'))} loaded of "
                                f"{format_number(summary.get('total_packages'))}")],
        "run": [(label, value) for label, value in (
            ("started", format_time(run.get("started"))),
            ("duration", format_duration(run.get("duration"))),
            ("python", f"{run.get('implementation', '')} {run.get('python', '')}".strip() or None),
            ("platform", run.get("platform")),
            ("host", run.get("hostname")),
            ("xdist workers", run.get("workers") or None),
            ("exit status", run.get("exitstatus")),
            ("command", " ".join(shlex.quote(str(a)) for a in _list(run.get("argv"))) or None),
        ) if value not in (None, "")],
        "interrupted": bool(run.get("interrupted")),
        "tool": _dict(report.get("tool")),
        "threshold": threshold,
        "leaks": cards,
        "leaking_tests": len(leaking),
        "hunted": hunted,
        "untracked": untracked_note(report),
        "how_to_hunt": HOW_TO_HUNT,
        "open_leaks": OPEN_LEAKS,
        "inconclusive": [{**summary_of_test(t), "hunt_error": _dict(t.get("hunt")).get("error")} for t in inconclusive],
        "packages": packages,
        "leaking_packages": len(leaking_packages),
        "suggestions": [{"severity": str(s.get("severity") or "info"), "package": s.get("package_name"),
                         "type": s.get("type"), "message": s.get("message"),
                         "recommendation": s.get("recommendation")} for s in suggestions],
        "comparison": comparison,
        "tests": table_of_tests(tests, anchors),
    }


def render_html(report: dict[str, Any]) -> str:
    """The report page as one self-contained HTML document."""
    import markupsafe

    script, script_hash = inline_script("report.js")
    return environment().get_template("report.html.jinja").render(
        view=build_view(report), script=markupsafe.Markup(script), script_hash=script_hash)


def write_html(report: dict[str, Any], path: str) -> None:
    write_text_atomic(path, render_html(report))
