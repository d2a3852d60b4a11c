"""The words of a hunt: the failure message of a leaking test and the note of a hunt cut short by its budget."""

from __future__ import annotations

from typing import Any

from pytest_memtrack.hunt import native
from pytest_memtrack.hunt.verdict import KINDS, HuntParameters, HuntResult
from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, fit_all
from pytest_memtrack.report.verdict import leak_line
from pytest_memtrack.tracking.analysis import MIN_GROWING_STEPS
from pytest_memtrack.units import format_bytes, plural

BUDGET_OPTION = "--memtrack-hunt-budget"


class LeakFailure:
    """A leaking test's ``longrepr``: the failure message, wrapped to the terminal's width when pytest prints it.
    Its first line (the culprit) is the crash message that pytest's short summary, ``--tb=line`` and JUnit XML's
    failure message show. Sent between processes (xdist) as ``str()``, the message; ``revive`` makes it this again."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.reprcrash = _Crash(message.split("\n", 1)[0])

    def toterminal(self, out: Any) -> None:
        width = getattr(out, "fullwidth", None)
        first, *rest = self.message.splitlines() or [""]
        for line in fit(first, width, whole_tail=True) + fit_all(rest, width):
            out.line(line)

    def __str__(self) -> str:
        return self.message


class _Crash:
    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        return self.message


def revive(report: Any) -> None:
    """Make a leaking test's call report that came from an xdist worker (``longrepr`` a plain string, the report
    marked ``memtrack_leak``) carry a :class:`LeakFailure` again."""
    if getattr(report, "memtrack_leak", False) and isinstance(report.longrepr, str):
        report.longrepr = LeakFailure(report.longrepr)


def budget_message(params: HuntParameters, elapsed: float, runs: int, measured: int) -> str:
    budget = f"its time budget of {params.time_budget:g} s ({BUDGET_OPTION}, ini memtrack_hunt_budget)"
    repeated = plural(runs, "repeated run")
    if measured == 0:
        return (f"no leak verdict: the hunt ran out of {budget} after {repeated} ({elapsed:.1f} s), "
                f"before any measured run; raise {BUDGET_OPTION} (0: no limit) to hunt this test")
    caveat = f" ({measured} measured {'run' if measured == 1 else 'runs'} cannot show a leak: it takes three " \
             "growing steps)" if measured < MIN_GROWING_STEPS else ""
    return (f"the hunt stopped at {budget} after {repeated} ({elapsed:.1f} s); the verdict uses those "
            f"runs: {params.warmup_runs} warm-up, {measured} measured{caveat}")


def screen_budget_message(params: HuntParameters, elapsed: float, runs: int) -> str:
    """The note of a screen that ran out of the time budget before it could pass the test or hand it to the hunt."""
    return (f"no leak verdict: the hunt ran out of its time budget of {params.time_budget:g} s ({BUDGET_OPTION}, "
            f"ini memtrack_hunt_budget) after {plural(runs, 'repeated run')} ({elapsed:.1f} s) of its untraced "
            f"screen, whose readings cannot convict; raise {BUDGET_OPTION} (0: no limit) to hunt this test")


def describe(result: HuntResult, limit: float, rootdir: str | None = None) -> str:
    """The failure message: what leaked, how fast, and where. Its first line leads with the culprit
    (``report.verdict.leak_line``): pytest's short summary shows that line alone. Paths read as
    ``formatting.short_path`` gives them (relative to ``rootdir``, ``site-packages/...``, ``python3.X/...``)."""
    measured = max(0, len(result.readings) - 1)
    deep = f", {result.probe_runs} deeply traced" if result.probe_runs else ""
    screen = f", {result.screen_runs} screening" if result.screen_runs else ""
    test = {"hunt": result.to_dict(), "leak_score": result.score, "limit": limit}
    lines = [f"memtrack: {leak_line(test, rootdir)}",
             f"  runs: {result.runs} ({result.warmup_runs} warm-up, {measured} measured{deep}{screen}, 1 reported), "
             f"limit max_leak_score({limit:g})"]
    labels = {"memory": "Python memory (tracemalloc)", "native": f"native memory ({native.NATIVE_READING}, not traced)",
              "fds": "file descriptors", "threads": "threads"}
    for kind in KINDS:
        verdict = result.kinds[kind]
        if verdict.score <= 0 and not verdict.leaking:
            continue
        amount = format_bytes(verdict.per_run) if kind in ("memory", "native") else f"{verdict.per_run:g}"
        mark = "LEAK" if verdict.leaking else "grew"
        lines.append(f"  {mark} {labels[kind]}: {amount} per run (score {verdict.score:.2f})")
    ev = result.evidence
    if ev.get("allocation_sites"):
        lines.append("  top allocation sites (growth per run):")
        lines += [f"    {short_path(s['file'], rootdir)}:{s['line']}: {format_bytes(s['bytes_per_run'])} in "
                  f"{s['count_per_run']:.1f} blocks"
                  for s in ev["allocation_sites"][:5]]
    if ev.get("packages"):
        lines.append("  allocated in: " + ", ".join(f"{p['package']} ({format_bytes(p['bytes_per_run'])}/run)"
                                                   for p in ev["packages"][:5]))
    if ev.get("holders"):
        lines.append("  kept alive by: " + ", ".join(
            f"{h['holder']} ({h['type']}, {h['note']})" if h.get("note") else f"{h['holder']} ({h['type']})"
            for h in ev["holders"][:3]))
    if ev.get("object_types"):
        lines.append("  object types that grew: " + ", ".join(f"{t['type']} (+{t['count_per_run']:.1f}/run)"
                                                            for t in ev["object_types"][:6]))
    if ev.get("new_threads"):
        lines.append("  threads left running: " + ", ".join(ev["new_threads"][:5]))
    if ev.get("new_fds"):
        lines.append("  file descriptors left open: " + ", ".join(ev["new_fds"][:5]))
    if result.error:
        lines.append(f"  note: {result.error}")
    return "\n".join(lines)
