"""GitHub Actions step summary: a short Markdown verdict appended to ``$GITHUB_STEP_SUMMARY``.

Registered by ``report.plugin.configure`` whenever ``--memtrack`` is on; it does nothing unless the variable is set
(GitHub sets it in every step). Built from the same report model as every other renderer.
"""

from __future__ import annotations

from typing import Any

from pytest_memtrack.report.formatting import format_bytes, format_score
from pytest_memtrack.report.verdict import HOW_TO_HUNT, first_project_site, headline, lead_kind, per_run_text
from pytest_memtrack.units import plural

ENV = "GITHUB_STEP_SUMMARY"
TOP_TESTS = 10
TOP_PACKAGES = 5


def md_cell(value: Any) -> str:
    """Text safe inside one Markdown table cell: pipes escaped, HTML neutralised, one line."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return text or " "


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def render_summary(report: dict[str, Any]) -> str:
    """The Markdown summary: verdict, top leaking tests, top packages."""
    tests = [t for t in report.get("tests") or [] if isinstance(t, dict)]
    leaking = sorted((t for t in tests if t.get("leaking")), key=lambda t: -_number(t.get("leak_score")))
    summary = _dict(report.get("summary"))
    comparison = _dict(report.get("comparison"))
    regressions = comparison.get("regressions") if comparison else None
    said = headline(report)
    mark = {"bad": "❌", "good": "✅"}.get(said.tone, "⚪")
    lines = [f"### {mark} pytest-memtrack: {said.text}", ""]
    if said.tone == "neutral" and said.tests:
        lines += [f"To check tests for leaks, {md_cell(HOW_TO_HUNT)}.", ""]
    facts = [f"system memory pressure **{md_cell(summary.get('system_memory_pressure', 'unknown'))}**",
             f"tracked memory {format_bytes(summary.get('total_current_memory'))} "
             f"(peak {format_bytes(summary.get('total_peak_memory'))})"]
    if regressions and leaking:
        facts.append(f"{plural(regressions, 'regression')} against the baseline")
    lines += [" · ".join(facts), ""]
    if leaking:
        lines += ["| test | leak score | growth | where |", "|---|---:|---:|---|"]
        for test in leaking[:TOP_TESTS]:
            hunt = _dict(test.get("hunt"))
            lead = lead_kind(test) or "memory"
            growth = per_run_text(lead, _dict(_dict(hunt.get("kinds")).get(lead)).get("per_run"))
            site = first_project_site(_dict(hunt.get("evidence")).get("allocation_sites") or [])
            where = f"{site.get('file', '?')}:{site.get('line', '?')}" if site and lead == "memory" else "—"
            lines.append(f"| {md_cell(test.get('nodeid', '?'))} | {format_score(test.get('leak_score'))} | "
                         f"{md_cell(lead)} {md_cell(growth)} | {md_cell(where)} |")
        if len(leaking) > TOP_TESTS:
            lines.append(f"\n…and {len(leaking) - TOP_TESTS} more leaking tests (see the HTML report).")
        lines.append("")
    packages = [_dict(p) for p in _dict(report.get("packages")).values()]
    packages.sort(key=lambda p: (-_number(_dict(p.get("memory_metrics")).get("memory_leak_score")),
                                 -_number(_dict(p.get("memory_metrics")).get("current_memory_usage"))))
    if packages:
        lines += ["| package | current | peak | trend | leak score |", "|---|---:|---:|---|---:|"]
        for package in packages[:TOP_PACKAGES]:
            metrics = _dict(package.get("memory_metrics"))
            lines.append(f"| {md_cell(package.get('package_name', '?'))} | "
                         f"{format_bytes(metrics.get('current_memory_usage'))} | "
                         f"{format_bytes(metrics.get('peak_memory_usage'))} | "
                         f"{md_cell(metrics.get('memory_trend', '—'))} | "
                         f"{format_score(metrics.get('memory_leak_score'))} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def append_summary(report: dict[str, Any], path: str) -> None:
    """Append (never overwrite: other steps' summaries share the file) the Markdown summary to ``path``."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(render_summary(report))
