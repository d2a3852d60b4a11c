"""The words of a hunt: the failure message of a leaking test and the note of a hunt cut short by its budget."""

from __future__ import annotations

from pytest_memtrack.hunt import native
from pytest_memtrack.hunt.verdict import KINDS, HuntParameters, HuntResult
from pytest_memtrack.units import format_bytes

BUDGET_OPTION = "--memtrack-hunt-budget"


def budget_message(params: HuntParameters, elapsed: float, runs: int, measured: int) -> str:
    budget = f"its time budget of {params.time_budget:g} s ({BUDGET_OPTION}, ini memtrack_hunt_budget)"
    if measured == 0:
        return (f"no leak verdict: the hunt ran out of {budget} after {runs} repeated run(s) ({elapsed:.1f} s), "
                f"before any measured run; raise {BUDGET_OPTION} (0: no limit) to hunt this test")
    caveat = " (a single measured run cannot show a leak)" if measured == 1 else ""
    return (f"the hunt stopped at {budget} after {runs} repeated runs ({elapsed:.1f} s); the verdict uses those "
            f"runs: {params.warmup_runs} warm-up, {measured} measured{caveat}")


def screen_budget_message(params: HuntParameters, elapsed: float, runs: int) -> str:
    """The note of a screen that ran out of the time budget before it could pass the test or hand it to the hunt."""
    return (f"no leak verdict: the hunt ran out of its time budget of {params.time_budget:g} s ({BUDGET_OPTION}, "
            f"ini memtrack_hunt_budget) after {runs} repeated run(s) ({elapsed:.1f} s) of its untraced screen, "
            f"whose readings cannot convict; raise {BUDGET_OPTION} (0: no limit) to hunt this test")


def describe(result: HuntResult, limit: float) -> str:
    """The failure message: what leaked, how fast, and where."""
    measured = max(0, len(result.readings) - 1)
    deep = f", {result.probe_runs} deeply traced" if result.probe_runs else ""
    screen = f", {result.screen_runs} screening" if result.screen_runs else ""
    lines = [f"memtrack: leak score {result.score:.2f} exceeds max_leak_score({limit:g}) "
             f"({result.runs} runs: {result.warmup_runs} warm-up, {measured} measured{deep}{screen}, 1 reported)"]
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
        lines += [f"    {s['file']}:{s['line']}: {format_bytes(s['bytes_per_run'])} in {s['count_per_run']:.1f} blocks"
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
