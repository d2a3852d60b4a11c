"""What a report says about its run, decided once for every surface (terminal, HTML, step summary).

Pure functions of the report model: the headline (leaks, regressions, or that nothing was checked), which leak
kind of a test to lead with, the advice for it, and the command that reproduces its hunt.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.units import finite_number, format_bytes, plural

#: Leak kinds in display order, with the unit of their per-run figure.
KINDS = (("memory", "bytes"), ("native", "bytes"), ("fds", "count"), ("threads", "count"))
_COUNT_WORDS = {"fds": ("file descriptor", "file descriptors"), "threads": ("thread", "threads")}
#: How a user gets tests hunted, said wherever nothing was.
HOW_TO_HUNT = ("mark a test @pytest.mark.max_leak_score(0.1), or run with --memtrack-max-leak-score=0.1 to hunt "
               "every test")


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Headline:
    """The run's verdict in one line, and its tone: "bad", "good" or "neutral" (nothing was checked)."""

    text: str
    tone: str
    tests: int
    hunted: int
    leaking: int


def headline(report: Mapping[str, Any]) -> Headline:
    tests = [_dict(t) for t in _list(report.get("tests"))]
    leaking = sum(1 for t in tests if t.get("leaking"))
    hunted = sum(1 for t in tests if is_hunted(t))
    comparison = _dict(report.get("comparison"))
    regressions = comparison.get("regressions")
    if leaking:
        return Headline(f"{leaking} of {len(tests)} tests leak", "bad", len(tests), hunted, leaking)
    if isinstance(regressions, int) and regressions:
        text = f"{plural(regressions, 'memory regression')} against the baseline"
        return Headline(text, "bad", len(tests), hunted, leaking)
    if comparison.get("error") and comparison.get("rules"):  # a gate was asked for and could not run
        return Headline(f"The regression gate could not run: {comparison['error']}", "bad", len(tests), hunted, 0)
    if not tests:
        return Headline("No tests ran — nothing was checked for leaks", "neutral", 0, 0, 0)
    if not hunted:
        return Headline(f"Not checked for leaks: none of the {len(tests)} tests was hunted", "neutral",
                        len(tests), 0, 0)
    return Headline(f"No leaks found in the {plural(hunted, 'hunted test')}", "good",
                    len(tests), hunted, 0)


def is_hunted(test: Mapping[str, Any]) -> bool:
    """A test was checked for leaks when its hunt reached a score (an inconclusive hunt has none)."""
    return test.get("leak_score") is not None


def count_tests(tests: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many tests ran, were hunted (``is_hunted``) and leaked beyond their limit (the ``/metrics`` counters).
    During a session a test counts as run from its first (setup) report, so the one running is included."""
    entries = list(tests)
    return {"run": len(entries), "hunted": sum(1 for t in entries if is_hunted(t)),
            "leaking": sum(1 for t in entries if t.get("leaking"))}


def lead_kind(test: Mapping[str, Any]) -> str | None:
    """The kind to lead with: the highest-scoring of those that leaked, else of those that grew; None if none."""
    kinds = _dict(_dict(test.get("hunt")).get("kinds"))
    scored = [(bool(_dict(kinds.get(name)).get("leaking")), finite_number(_dict(kinds.get(name)).get("score")) or 0.0,
               -index, name) for index, (name, _) in enumerate(KINDS) if name in kinds]
    scored = [entry for entry in scored if entry[0] or entry[1] > 0]
    return max(scored)[3] if scored else None


def per_run_text(kind: str, per_run: Any) -> str:
    """A kind's growth per run with its unit: ``+3.8 KiB per run``, ``1 thread per run``, ``no growth``."""
    number = finite_number(per_run)
    if number is None:
        return "—"
    if number <= 0:
        return "no growth"
    if kind in _COUNT_WORDS:
        one, many = _COUNT_WORDS[kind]
        text = f"{number:,.1f}".removesuffix(".0")
        return f"{text} {one if text == '1' else many} per run"
    return f"{format_bytes(number, signed=True)} per run"


def memory_figure(test: Mapping[str, Any]) -> str:
    """A test's memory in one figure, for a column beside other plugins' (pytest-html's results table): a hunted
    test's growth per run of its lead kind (``+3.8 KiB per run``, ``no growth``), else what its run moved the
    process's RSS by (``RSS +1.2 MiB``); ``—`` when there is no reading."""
    if is_hunted(test):
        kind = lead_kind(test) or "memory"
        return per_run_text(kind, _dict(_dict(_dict(test.get("hunt")).get("kinds")).get(kind)).get("per_run"))
    delta = finite_number(test.get("rss_delta"))
    return "—" if delta is None else f"RSS {format_bytes(delta, signed=True)}"


def first_project_site(sites: Sequence[Any]) -> Mapping[str, Any] | None:
    """The first allocation site in the project's own code (a path relative to the rootdir, not the standard
    library's or a frozen module's), else the first site."""
    clean = [_dict(site) for site in sites]
    for site in clean:
        path = str(site.get("file", ""))
        if path and not path.startswith(("/", "<")) and "site-packages" not in path and ":\\" not in path:
            return site
    return clean[0] if clean else None


def amount_a_run(kind: str, per_run: Any) -> str:
    """A kind's growth in a run, as the lead of a leak says it: ``3.8 KiB``, ``1 thread``, ``2 file descriptors``."""
    number = finite_number(per_run) or 0.0
    if kind in _COUNT_WORDS:
        one, many = _COUNT_WORDS[kind]
        text = f"{number:,.1f}".removesuffix(".0")
        return f"{text} {one if text == '1' else many}"
    return format_bytes(number) + (" of native memory" if kind == "native" else "")


def culprit(test: Mapping[str, Any], rootdir: str | None = None) -> str | None:
    """Where the leak of the lead kind is: the first allocation site in the project's code for Python memory
    (``pkg/mod.py:12``, paths shortened by ``formatting.short_path``), the first thread left running, the first
    file descriptor left open; None when the evidence names nothing."""
    evidence = _dict(_dict(test.get("hunt")).get("evidence"))
    kind = lead_kind(test)
    if kind == "memory":
        site = first_project_site(_list(evidence.get("allocation_sites")))
        return f"{short_path(site.get('file', '?'), rootdir)}:{site.get('line', '?')}" if site else None
    if kind in ("threads", "fds"):
        named = _list(evidence.get("new_threads" if kind == "threads" else "new_fds"))
        return str(named[0]) if named else None
    return None


def leak_line(test: Mapping[str, Any], rootdir: str | None = None) -> str:
    """A leaking test in one line that leads with its culprit, the same on every surface (the failure message's
    first line, which pytest's short summary shows, cut to the terminal's width, and the terminal's LEAK entry):
    ``inventory_app/service.py:93 leaks 3.8 KiB a run (score 0.25 > limit 0.1)``; without an allocation site
    ``leaks 1 thread a run (worker; score 0.90 > limit 0.1)``."""
    kind = lead_kind(test) or "memory"
    per_run = _dict(_dict(_dict(test.get("hunt")).get("kinds")).get(kind)).get("per_run")
    where = culprit(test, rootdir)
    score = finite_number(test.get("leak_score")) or 0.0
    limit = finite_number(test.get("limit"))
    against = f"score {score:.2f}" + (f" > limit {limit:g}" if limit is not None else "")
    amount = amount_a_run(kind, per_run)
    if kind == "memory" and where:
        return f"{where} leaks {amount} a run ({against})"
    if kind == "memory":
        return f"leaks {amount} of Python memory a run ({against})"
    return f"leaks {amount} a run ({where + '; ' if where else ''}{against})"


def advice(test: Mapping[str, Any], native_reading: str | None = None) -> str:
    """One sentence telling the reader where to look first, for the kind that scored highest."""
    evidence = _dict(_dict(test.get("hunt")).get("evidence"))
    kind = lead_kind(test)
    if kind == "threads":
        names = ", ".join(str(t) for t in _list(evidence.get("new_threads"))[:3]) or "threads"
        return f"Each run leaves {names} running: stop and join them in teardown."
    if kind == "fds":
        fds = ", ".join(str(f) for f in _list(evidence.get("new_fds"))[:3]) or "file descriptors"
        return f"Each run leaves {fds} open: close them (use a with-block) or close them in a fixture's teardown."
    if kind == "native":
        reading = ("malloc's bytes in use grow" if native_reading == "malloc"
                   else "the process's memory (RSS) grows" if native_reading == "rss"
                   else "native memory grows")
        return (f"Each run {reading} beyond what Python's allocator traced: suspect a C extension, a native cache "
                "or memory mapped outside malloc; rerun with --memtrack-trace-all to rule out Python objects.")
    if kind == "memory":
        site = first_project_site(_list(evidence.get("allocation_sites")))
        holders = _list(evidence.get("holders"))
        if site is not None:
            first = _dict(holders[0]) if holders else {}
            note = f" ({first['note']})" if first.get("note") else ""
            kept = f"; it is kept alive by {first.get('holder')}{note}" if holders else ""
            return (f"Start at {site.get('file', '?')}:{site.get('line', '?')}: it allocates "
                    f"{format_bytes(site.get('bytes_per_run'))} per run that stays alive{kept}. Look for a cache, a "
                    "global list or a registry that grows on every call and is never cleared.")
        return "Python memory grows every run; rerun with --memtrack-trace-all to see the allocation sites."
    return "Rerun this test alone to confirm the leak."


def reproduce_args(test: Mapping[str, Any]) -> list[str]:
    """The command that hunts this test again with the same limit, wherever the limit came from (its marker,
    ``--memtrack-max-leak-score`` or the ini file), as words."""
    command = ["pytest", str(test.get("nodeid", "")), "--memtrack"]
    limit = finite_number(test.get("limit"))
    return command + ([f"--memtrack-max-leak-score={limit:g}"] if limit is not None else [])


def reproduce(test: Mapping[str, Any]) -> str:
    """``reproduce_args`` as one shell command line."""
    return shlex.join(reproduce_args(test))


def untracked_note(report: Mapping[str, Any]) -> str | None:
    """What was imported but not tracked, and how to include it; None when nothing was left out."""
    names = [str(n) for n in _list(_dict(report.get("run")).get("untracked_packages"))]
    if not names:
        return None
    stdlib = [n for n in names if n in sys.stdlib_module_names]
    tooling = [n for n in names if n not in sys.stdlib_module_names]
    parts = []
    if tooling:
        shown = ", ".join(tooling[:8]) + (f" and {len(tooling) - 8} more" if len(tooling) > 8 else "")
        parts.append(f"the test tooling and the suite's own packages ({shown})")
    if stdlib:
        parts.append(plural(len(stdlib), "standard-library module"))
    return f"Not tracked: {' and '.join(parts)}; --memtrack-measure-all tracks them too."
