"""The dashboard page (``GET /``): the session as a person watches it — progress, the leaking tests found so far
with their evidence, the packages with their history charts, and at the end the verdict and the reports' paths.

Rendered from the same report model and view pieces as the HTML report (``report.cards``, ``report.rows``,
``report.verdict``) through the one Jinja environment. While a live session runs, the page's script fetches this
page again every 2 s and swaps in its ``#live`` part; it stops once the session has finished (or the server is
gone). A saved report is rendered once and never polled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import markupsafe

from pytest_memtrack import __version__
from pytest_memtrack.report.cards import leak_cards
from pytest_memtrack.report.formatting import format_bytes, format_duration, format_time
from pytest_memtrack.report.rows import package_rows
from pytest_memtrack.report.templates import environment, inline_script
from pytest_memtrack.server.progress import SessionSource
from pytest_memtrack.units import MISSING, finite_number

POLL_MS = 2000
#: Leak cards the page shows (the highest scores first); the rest are counted and left to the report.
MAX_CARDS = 20


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _time_to_limit(forecast: Any) -> str:
    """The process's forecast in words: "not growing" when there is one without a time, — without one."""
    if not isinstance(forecast, Mapping):
        return MISSING
    seconds = finite_number(forecast.get("seconds_to_limit"))
    return "not growing" if seconds is None else format_duration(seconds)


def dashboard_view(session: SessionSource, mode: str, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the page shows, formatted."""
    progress = session.payload()
    model = session.model()
    run, summary = _dict(model.get("run")), _dict(model.get("summary"))
    threshold = finite_number(_dict(model.get("leaks")).get("threshold"))
    tests = [t for t in model.get("tests") or [] if isinstance(t, Mapping)]
    cards, _ = leak_cards(tests, run.get("rootdir"), run.get("native_reading"))
    done, total = progress["tests_done"], progress["tests_total"]
    started = finite_number(progress.get("started"))
    finished = progress["state"] == "finished"
    elapsed = (finite_number(run.get("duration")) if finished and run.get("duration") is not None
               else (progress["updated"] - started if started is not None else None))
    trends, levels = _dict(summary.get("memory_trends")), _dict(summary.get("memory_pressure_levels"))
    return {
        "mode": mode,
        "live": progress["live"],
        "state": progress["state"],
        "poll": progress["live"] and not finished,
        "verdict": progress["verdict"]["text"] if finished or progress["leaking"] else
        ("Running: no leaking test so far" if progress["hunted"] else "Running"),
        "tone": progress["verdict"]["tone"] if finished or progress["leaking"] else "neutral",
        "done": done, "total": total,
        "progress_text": f"{done:,} of {total:,} tests done" if total else f"{done:,} tests done",
        "current": progress["current_test"],
        "elapsed": format_duration(elapsed),
        "started": format_time(started),
        "outcomes": list(progress["outcomes"].items()),
        "hunted": progress["hunted"],
        "reports": progress["reports"],
        "leaks": cards[:MAX_CARDS],
        "more_leaks": max(len(cards) - MAX_CARDS, 0),
        "groups": len(cards),
        "leaking_tests": progress["leaking"],
        "packages": package_rows(model, 0.1 if threshold is None else threshold),
        "totals": [("current memory", format_bytes(summary.get("total_current_memory"))),
                   ("peak memory", format_bytes(summary.get("total_peak_memory"))),
                   ("footprint", format_bytes(summary.get("total_memory_footprint"))),
                   ("packages loaded", f"{summary.get('loaded_packages', 0)} of {summary.get('total_packages', 0)}"),
                   ("process: time to memory limit", _time_to_limit(summary.get("process_forecast")))],
        "pressure": str(summary.get("system_memory_pressure") or "unknown"),
        "trends": [(k, trends.get(k, 0)) for k in ("increasing", "decreasing", "stable")],
        "levels": [(k, levels.get(k, 0)) for k in ("low", "medium", "high", "critical")],
        "notes": list(notes),
        "version": __version__,
        "poll_ms": POLL_MS,
    }


def render_live_part(session: SessionSource, mode: str, notes: Sequence[str] = ()) -> str:
    """The changing part of the page (``<div id="live">``) alone: what the page's script fetches and swaps in."""
    return environment().get_template("_dashboard_live.html.j2").render(v=dashboard_view(session, mode, notes))


def render_dashboard(session: SessionSource, mode: str, nonce: str, notes: Sequence[str] = ()) -> str:
    """The page for ``session``; ``mode`` is "live" or "saved report"; ``notes`` are lines shown under the title;
    ``nonce`` is the Content-Security-Policy nonce of its style and scripts."""
    scripts = markupsafe.Markup(inline_script("report.js")[0]), markupsafe.Markup(inline_script("dashboard.js")[0])
    return environment().get_template("dashboard.html.j2").render(
        v=dashboard_view(session, mode, notes), nonce=nonce, scripts=scripts)
