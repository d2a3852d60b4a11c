"""The terminal summary: short, leaks first, quiet when nothing is wrong."""

from __future__ import annotations

from typing import Any

from pytest_memtrack.report.model import leaking_tests
from pytest_memtrack.report.verdict import HOW_TO_HUNT, is_hunted, per_run_text, reproduce, untracked_note
from pytest_memtrack.settings import Settings
from pytest_memtrack.units import format_bytes


def summary_lines(report: dict[str, Any], verbose: int, top: int = 5) -> list[str]:
    """Plain lines (pure, so it is testable): the leaking tests, hunts that could not be completed (the test failed
    when repeated, the time budget ran out), leaking packages, and with -v the top packages."""
    lines: list[str] = []
    leaking = leaking_tests(report)
    summary = report["summary"]
    hunted = sum(1 for t in report["tests"] if is_hunted(t))
    for test in leaking:
        per_run = (test.get("hunt") or {}).get("kinds", {})
        kinds = ", ".join(f"{k} {per_run_text(k, v['per_run'])}" for k, v in per_run.items() if v.get("leaking"))
        lines.append(f"LEAK {test['nodeid']}: score {test['leak_score']:.2f} > {test['limit']:g} ({kinds})")
        lines.append(f"  reproduce: {reproduce(test)}")
    notes = [(test["nodeid"], test["hunt"]["error"]) for test in report["tests"]
             if not test.get("leaking") and (test.get("hunt") or {}).get("error")]
    for nodeid, error in notes[:top]:
        lines.append(f"note {nodeid}: {error}")
    if len(notes) > top:
        lines.append(f"note: {len(notes) - top} more hunted tests were not fully assessed "
                     "(hunt.error in the JSON report)")
    for leak in report["leaks"]["leaks"]:
        lines.append(f"package {leak['package_name']}: leak score {leak['leak_score']:.2f}, "
                     f"trend {leak['memory_trend']}, {format_bytes(leak['memory_growth_rate'])}/s")
    unload = summary.get("auto_unload") or {}
    for entry in unload.get("freed") or []:
        lines.append(f"auto-unload: freed {entry['package_name']} ({format_bytes(entry['module_state_bytes'])} module "
                     f"state) at {entry['pressure']} pressure")
    for entry in unload.get("not_freed") or []:
        lines.append(f"auto-unload: could not free {entry['package_name']}: {entry['reason']}")
    note = untracked_note(report)
    if verbose > 0 and note:
        lines.append(note)
    if verbose > 0 or leaking or report["leaks"]["leaks"]:
        packages = sorted(report["packages"].values(),
                          key=lambda p: -(p["memory_metrics"]["current_memory_usage"] or 0))[:top]
        if packages:
            lines.append(f"{'package':<24} {'current':>10} {'peak':>10} {'footprint':>10} {'trend':>10} {'score':>6}")
            for p in packages:
                m = p["memory_metrics"]
                lines.append(f"{p['package_name'][:24]:<24} {format_bytes(m['current_memory_usage']):>10} "
                             f"{format_bytes(m['peak_memory_usage']):>10} {format_bytes(m['memory_footprint']):>10} "
                             f"{m['memory_trend']:>10} {m['memory_leak_score']:>6.2f}")
    if leaking:
        checked = f"{len(leaking)} leaking test(s) ({hunted} hunted)"
    elif hunted:
        checked = f"no leaking tests ({hunted} hunted)"
    else:
        checked = "not checked for leaks (no test hunted)"
        lines.append(f"To check tests for leaks, {HOW_TO_HUNT}.")
    verdict = f"{checked}, {summary['total_packages']} packages, " \
        f"{format_bytes(summary['total_current_memory'])} module state, system pressure " \
        f"{summary['system_memory_pressure']}"
    lines.append(verdict)
    return lines


def write_summary(terminalreporter: Any, report: dict[str, Any] | None, problems: list[str],
                  settings: Settings, *, notes: list[str] | None = None, json_written: bool = False,
                  json_error: str | None = None) -> None:
    """The summary, then ``notes`` (Ctrl-C while writing), then where the JSON report is: its path only when it was
    written, else a warning line naming the path and the reason."""
    verbose = terminalreporter.config.option.verbose
    if report is None:
        terminalreporter.write_sep("-", "memtrack")
        for problem in problems:
            terminalreporter.write_line(f"memtrack: {problem}")
    else:
        lines = summary_lines(report, verbose)
        troubled = len(lines) > 1 or problems
        if troubled or verbose > 0:
            terminalreporter.write_sep("-", "memtrack")
            for line in lines:
                terminalreporter.write_line(line, red=line.startswith("LEAK"))
        else:
            terminalreporter.write_line(f"memtrack: {lines[-1]}")
        for problem in problems:
            terminalreporter.write_line(f"memtrack: problem: {problem}", yellow=True)
    for note in notes or []:
        terminalreporter.write_line(f"memtrack: {note}", yellow=True)
    if settings.json_path and json_written:
        terminalreporter.write_line(f"memtrack: JSON report: {settings.json_path}")
    elif settings.json_path and json_error:
        terminalreporter.write_line(f"memtrack: warning: could not write the JSON report {settings.json_path}: "
                                    f"{json_error}", yellow=True)
