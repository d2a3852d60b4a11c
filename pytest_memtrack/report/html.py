"""The HTML report: one self-contained page rendered with Jinja from the report model (docs/report-format.md).

``build_view(report)`` turns the model into display-ready values (human units, SVG polyline points) with pure
functions; ``templates/report.html.jinja`` only lays them out through the one autoescaping environment
(``templates.environment``). The same ``render_html`` serves the ``--memtrack-html`` option and the offline
``pytest-memtrack html`` command.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_memtrack.history.compare import FIGURES
from pytest_memtrack.report.atomic import write_text_atomic
from pytest_memtrack.report.formatting import (
    format_bytes,
    format_count,
    format_duration,
    format_number,
    format_score,
    format_signed_bytes,
    format_time,
    short_path,
)
from pytest_memtrack.report.templates import environment, inline_script
from pytest_memtrack.report.verdict import (
    HOW_TO_HUNT,
    KINDS,
    advice,
    headline,
    is_hunted,
    lead_kind,
    per_run_text,
    reproduce,
    untracked_note,
)
from pytest_memtrack.tracking.payloads import is_leaking
from pytest_memtrack.units import MISSING
from pytest_memtrack.units import finite_number as _number

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


_BYTE_WORDS = ("memory", "bytes", "rss", "footprint", "peak", "usage", "traced", "size", "current", "total")


TOP_EVIDENCE = 5


#: Leaking tests shown expanded; the rest sit in a <details> block (still readable with JavaScript off).
OPEN_LEAKS = 10


def polyline_points(points: Iterable[Sequence[Any]], width: float, height: float, pad: float = 2.0) -> str:
    """SVG ``points`` for a line chart of ``(x, y)`` pairs fitted into a ``width`` x ``height`` box.

    Pairs are sorted by x; pairs with a non-finite or non-numeric member are dropped. The chart keeps ``pad`` units
    from every edge; larger y is drawn higher (SVG y grows downwards). A single point or a constant series is drawn
    at mid height; all x equal puts the points at mid width. Empty input gives ``''``.
    """
    clean = sorted(
        (x, y) for x, y in ((_number(p[0]), _number(p[1])) for p in points if len(p) >= 2)
        if x is not None and y is not None
    )
    if not clean:
        return ""
    inner_w, inner_h = max(width - 2 * pad, 0.0), max(height - 2 * pad, 0.0)
    xs, ys = [p[0] for p in clean], [p[1] for p in clean]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)

    def scale(value: float, lo: float, hi: float) -> float:
        span = hi - lo
        if span <= 0 or not math.isfinite(span):
            return 0.5
        return min(max((value - lo) / span, 0.0), 1.0)

    out = []
    for x, y in clean:
        px = pad + scale(x, x_lo, x_hi) * inner_w
        py = pad + (1.0 - scale(y, y_lo, y_hi)) * inner_h
        out.append(f"{px:.1f},{py:.1f}")
    return " ".join(out)


def _chart(points: Sequence[Sequence[Any]], width: int, height: int) -> dict[str, Any] | None:
    ordered = sorted((x, y) for x, y in ((_number(p[0]), _number(p[1])) for p in points if len(p) >= 2)
                     if x is not None and y is not None)
    values = [y for _, y in ordered]
    line = polyline_points(points, width, height)
    if not line:
        return None
    return {"points": line, "width": width, "height": height, "low": format_bytes(min(values)),
            "high": format_bytes(max(values)), "count": len(values),
            "first": format_bytes(values[0]), "last": format_bytes(values[-1]),
            "dot": line.rsplit(" ", 1)[-1].split(",")}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _test_row(test: dict[str, Any]) -> dict[str, Any]:
    hunt = _dict(test.get("hunt"))
    kinds = _dict(hunt.get("kinds"))
    lead = lead_kind(test)
    return {
        "nodeid": str(test.get("nodeid", "?")),
        "outcome": str(test.get("outcome") or "?"),
        "duration": format_duration(test.get("duration")),
        "duration_raw": _number(test.get("duration")) or 0.0,
        "rss_delta": format_signed_bytes(test.get("rss_delta")),
        "rss_delta_raw": _number(test.get("rss_delta")) or 0.0,
        "score": format_score(test.get("leak_score")),
        "score_raw": -1.0 if _number(test.get("leak_score")) is None else _number(test.get("leak_score")),
        "limit": format_score(test.get("limit")),
        "leaking": bool(test.get("leaking")),
        # The headline amount is the leading kind's, in its unit ("1 thread per run", "+3.8 KiB per run").
        "per_run": per_run_text(lead, _dict(kinds.get(lead)).get("per_run")) if lead else MISSING,
        "lead_kind": lead,
        "worker": test.get("worker"),
        "hunt_error": hunt.get("error"),
    }


def _leak_card(test: dict[str, Any], rootdir: str | None = None, native_reading: str | None = None) -> dict[str, Any]:
    hunt = _dict(test.get("hunt"))
    kinds, evidence = _dict(hunt.get("kinds")), _dict(hunt.get("evidence"))
    kind_rows = []
    for name, unit in KINDS:
        kind = _dict(kinds.get(name))
        if not kind:
            continue
        per_run = _number(kind.get("per_run"))
        hint = ""
        if per_run is not None and per_run < 0:
            hint = (f"The reading fell by {format_bytes(-per_run) if unit == 'bytes' else format_number(-per_run)} "
                    "per run: memory given back (to the allocator, the OS), which is no leak and no growth.")
        kind_rows.append({"name": name, "leaking": bool(kind.get("leaking")), "score": format_score(kind.get("score")),
                          "per_run": per_run_text(name, per_run), "hint": hint})
    readings = [_dict(r) for r in _list(hunt.get("readings"))]
    traced = _chart([(i, r.get("traced")) for i, r in enumerate(readings)], 220, 48)
    rss = _chart([(i, r.get("rss")) for i, r in enumerate(readings)], 220, 48)
    return {
        **_test_row(test),
        "message": test.get("message"),
        "runs": hunt.get("runs"),
        "warmup_runs": hunt.get("warmup_runs"),
        "kinds": kind_rows,
        "sites": [{"where": f"{short_path(_dict(s).get('file', '?'), rootdir)}:{_dict(s).get('line', '?')}",
                   "bytes": format_bytes(_dict(s).get("bytes_per_run")),
                   "count": format_count(_dict(s).get("count_per_run"))}
                  for s in _list(evidence.get("allocation_sites"))[:TOP_EVIDENCE]],
        "packages": [{"name": str(_dict(p).get("package", "?")), "bytes": format_bytes(_dict(p).get("bytes_per_run"))}
                     for p in _list(evidence.get("packages"))[:TOP_EVIDENCE]],
        "object_types": [{"name": str(_dict(o).get("type", "?")),
                          "count": format_count(_dict(o).get("count_per_run"), signed=True)}
                         for o in _list(evidence.get("object_types"))[:TOP_EVIDENCE]],
        "holders": [{"name": str(_dict(h).get("holder", "?")), "type": str(_dict(h).get("type", "?")),
                     "note": str(_dict(h).get("note") or ""), "objects": format_count(_dict(h).get("objects"))}
                    for h in _list(evidence.get("holders"))[:TOP_EVIDENCE]],
        "new_threads": [str(t) for t in _list(evidence.get("new_threads"))[:TOP_EVIDENCE]],
        "new_fds": [str(f) for f in _list(evidence.get("new_fds"))[:TOP_EVIDENCE]],
        "traced_chart": traced,
        "rss_chart": rss,
        "next_step": advice(test, native_reading),
        "reproduce": reproduce(test),
    }


def _package_rows(report: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    histories = _dict(report.get("package_histories"))
    leaking_names = {str(_dict(leak).get("package_name")) for leak in _list(_dict(report.get("leaks")).get("leaks"))}
    rows = []
    for key, entry in _dict(report.get("packages")).items():
        entry = _dict(entry)
        name = str(entry.get("package_name") or key)
        metrics = _dict(entry.get("memory_metrics"))
        score = _number(metrics.get("memory_leak_score"))
        history = [p for p in _list(histories.get(key)) if isinstance(p, (list, tuple))]
        rows.append({
            "name": name,
            "status": str(entry.get("status") or ("loaded" if entry.get("is_loaded") else "unknown")),
            "current": format_bytes(metrics.get("current_memory_usage")),
            "current_raw": _number(metrics.get("current_memory_usage")) or 0.0,
            "peak": format_bytes(metrics.get("peak_memory_usage")),
            "peak_raw": _number(metrics.get("peak_memory_usage")) or 0.0,
            "footprint": format_bytes(metrics.get("memory_footprint")),
            "footprint_raw": _number(metrics.get("memory_footprint")) or 0.0,
            "trend": str(metrics.get("memory_trend") or MISSING),
            "growth": format_signed_bytes(metrics.get("memory_growth_rate")) + "/s"
            if _number(metrics.get("memory_growth_rate")) is not None else MISSING,
            "growth_raw": _number(metrics.get("memory_growth_rate")) or 0.0,
            "tests": [str(t) for t in _list(entry.get("leak_tests"))],
            "score": format_score(score),
            "score_raw": -1.0 if score is None else score,
            "leaking": name in leaking_names or (score is not None and is_leaking(score, threshold)),
            "chart": _chart(history, 120, 24),
        })
    rows.sort(key=lambda r: (not r["leaking"], -r["score_raw"], -r["current_raw"], r["name"]))  # type: ignore[operator]
    return rows


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
    leaking.sort(key=lambda t: -(_number(t.get("leak_score")) or 0.0))
    inconclusive = [t for t in tests if not t.get("leaking") and _dict(t.get("hunt")).get("error")]
    hunted = sum(1 for t in tests if is_hunted(t))
    packages = _package_rows(report, threshold)
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
        "leaks": [_leak_card(t, run.get("rootdir"), run.get("native_reading")) for t in leaking],
        "hunted": hunted,
        "untracked": untracked_note(report),
        "how_to_hunt": HOW_TO_HUNT,
        "open_leaks": OPEN_LEAKS,
        "inconclusive": [_test_row(t) for t in inconclusive],
        "packages": packages,
        "leaking_packages": len(leaking_packages),
        "suggestions": [{"severity": str(s.get("severity") or "info"), "package": s.get("package_name"),
                         "type": s.get("type"), "message": s.get("message"),
                         "recommendation": s.get("recommendation")} for s in suggestions],
        "comparison": comparison,
        "tests": sorted((_test_row(t) for t in tests),
                        key=lambda r: (not r["leaking"], -r["score_raw"], -r["rss_delta_raw"], r["nodeid"])),
    }


def render_html(report: dict[str, Any]) -> str:
    """The report page as one self-contained HTML document."""
    import markupsafe

    script, script_hash = inline_script("report.js")
    return environment().get_template("report.html.jinja").render(
        view=build_view(report), script=markupsafe.Markup(script), script_hash=script_hash)


def write_html(report: dict[str, Any], path: str) -> None:
    write_text_atomic(path, render_html(report))
