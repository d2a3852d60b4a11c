"""The terminal summary: short, leaks first, quiet when nothing is wrong, every line within the terminal's width."""

from __future__ import annotations

from typing import Any

from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, fit_command, shorten, terminal_width
from pytest_memtrack.report.model import leaking_tests
from pytest_memtrack.report.verdict import HOW_TO_HUNT, is_hunted, leak_line, reproduce_args, untracked_note
from pytest_memtrack.settings import Settings
from pytest_memtrack.units import format_bytes, plural

#: The package table's columns after the name: (header, width).
_COLUMNS = (("current", 10), ("peak", 10), ("footprint", 10), ("trend", 10), ("score", 6))
_NAME_WIDTH = 24


def verdict_line(report: dict[str, Any]) -> str:
    """The run in one line: leaking tests, packages, module state, system pressure."""
    summary = report["summary"]
    hunted = sum(1 for t in report["tests"] if is_hunted(t))
    leaking = len(leaking_tests(report))
    if leaking:
        checked = f"{plural(leaking, 'leaking test')} ({hunted} hunted)"
    elif hunted:
        checked = f"no leaking tests ({hunted} hunted)"
    else:
        checked = "not checked for leaks (no test hunted)"
    return (f"{checked}, {plural(summary['total_packages'], 'package')}, "
            f"{format_bytes(summary['total_current_memory'])} module state, system pressure "
            f"{summary['system_memory_pressure']}")


def package_table(report: dict[str, Any], top: int, width: int | None) -> list[str]:
    """The packages holding the most memory, a header over every column; the name column gives way to fit."""
    packages = sorted(report["packages"].values(),
                      key=lambda p: -(p["memory_metrics"]["current_memory_usage"] or 0))[:top]
    if not packages:
        return []
    figures = sum(w + 1 for _, w in _COLUMNS)
    name_width = _NAME_WIDTH if width is None else max(8, min(_NAME_WIDTH, width - figures))
    lines = [f"{'package':<{name_width}}" + "".join(f" {h:>{w}}" for h, w in _COLUMNS)]
    for p in packages:
        m = p["memory_metrics"]
        cells = (format_bytes(m["current_memory_usage"]), format_bytes(m["peak_memory_usage"]),
                 format_bytes(m["memory_footprint"]), str(m["memory_trend"]), f"{m['memory_leak_score']:.2f}")
        lines.append(f"{shorten(p['package_name'], name_width):<{name_width}}"
                     + "".join(f" {c:>{w}}" for c, (_, w) in zip(cells, _COLUMNS)))
    return lines


def summary_lines(report: dict[str, Any], verbose: int, top: int = 5, width: int | None = None) -> list[str]:
    """Plain lines (pure, so it is testable), each within ``width`` (None: unwrapped): the leaking tests, each
    leading with its culprit and the command that reproduces it; hunts that could not be completed (the test failed
    when repeated, the time budget ran out); leaking packages; with -v the top packages; the verdict last."""
    lines: list[str] = []
    leaking = leaking_tests(report)
    rootdir = (report.get("run") or {}).get("rootdir")
    for test in leaking:
        lines.append(f"LEAK {test['nodeid']}")  # one word after LEAK: never split from it
        lines += fit(f"  {leak_line(test, rootdir)}", width, whole_tail=True)
        lines += fit_command("  reproduce: ", reproduce_args(test), width)
    notes = [(test["nodeid"], test["hunt"]["error"]) for test in report["tests"]
             if not test.get("leaking") and (test.get("hunt") or {}).get("error")]
    for nodeid, error in notes[:top]:
        lines.append(f"note {nodeid}")  # one word after note, as after LEAK
        lines += fit(f"  {error}", width)
    if len(notes) > top:
        lines += fit(f"note: {plural(len(notes) - top, 'more hunted test')} not fully assessed "
                     "(hunt.error in the JSON report)", width)
    for leak in report["leaks"]["leaks"]:
        lines += fit(f"package {leak['package_name']}: leak score {leak['leak_score']:.2f}, "
                     f"trend {leak['memory_trend']}, {format_bytes(leak['memory_growth_rate'])}/s", width)
    unload = report["summary"].get("auto_unload") or {}
    for entry in unload.get("freed") or []:
        lines += fit(f"auto-unload: freed {entry['package_name']} ({format_bytes(entry['module_state_bytes'])} "
                     f"module state) at {entry['pressure']} pressure", width)
    for entry in unload.get("not_freed") or []:
        lines += fit(f"auto-unload: could not free {entry['package_name']}: {entry['reason']}", width)
    note = untracked_note(report)
    if verbose > 0 and note:
        lines += fit(note, width)
    if verbose > 0 or leaking or report["leaks"]["leaks"]:
        lines += package_table(report, top, width)
    if not any(is_hunted(t) for t in report["tests"]):
        lines += fit(f"To check tests for leaks, {HOW_TO_HUNT}.", width)
    lines += fit(verdict_line(report), width)
    return lines


def write_summary(terminalreporter: Any, report: dict[str, Any] | None, problems: list[str],
                  settings: Settings, *, notes: list[str] | None = None, json_written: bool = False,
                  json_error: str | None = None) -> None:
    """The summary, then ``notes`` (Ctrl-C while writing), then where the JSON report is: its path only when it was
    written, else a warning line naming the path and the reason."""
    verbose = terminalreporter.config.option.verbose
    width = terminal_width(terminalreporter)
    rootdir = str(terminalreporter.config.rootpath)

    def say(text: str, **markup: bool) -> None:
        for line in fit(text, width):
            terminalreporter.write_line(line, **markup)

    if report is None:
        terminalreporter.write_sep("-", "memtrack")
        for problem in problems:
            say(f"memtrack: {problem}")
    else:
        lines = summary_lines(report, verbose, width=None)
        if len(lines) > 1 or problems or verbose > 0:
            terminalreporter.write_sep("-", "memtrack")
            for line in summary_lines(report, verbose, width=width):
                terminalreporter.write_line(line, red=line.startswith("LEAK"))
        else:
            say(f"memtrack: {lines[-1]}")
        for problem in problems:
            say(f"memtrack: problem: {problem}", yellow=True)
    for note in notes or []:
        say(f"memtrack: {note}", yellow=True)
    path = short_path(settings.json_path, rootdir) if settings.json_path else None
    if path and json_written:
        say(f"memtrack: JSON report: {path}")
    elif path and json_error:
        say(f"memtrack: warning: could not write the JSON report {path}: {json_error}", yellow=True)

