"""Which leaking tests share one culprit, decided once for the HTML report and the dashboard.

Eight tests that leak through one cache are one finding, not eight near-identical cards. A test's culprit is what
its leading kind's evidence points at first: for memory the first allocation site in the project's code (else the
first object holding the growth), for threads and file descriptors the names of what was left behind (digits
dropped, so ``Thread-3`` and ``Thread-7`` of one worker pool match). A test whose evidence names nothing, or
whose lead is native memory (no site to name), stands alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memtrack.report.verdict import first_project_site, lead_kind
from pytest_memtrack.units import finite_number

_DIGITS = re.compile(r"\d+")


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def culprit(test: Mapping[str, Any]) -> str | None:
    """A label for what makes ``test`` leak, equal for tests with the same cause; None when nothing is named."""
    evidence = _dict(_dict(test.get("hunt")).get("evidence"))
    kind = lead_kind(test)
    if kind == "memory":
        site = first_project_site(_list(evidence.get("allocation_sites")))
        if site is not None:
            return f"allocated at {site.get('file', '?')}:{site.get('line', '?')}"
        holders = _list(evidence.get("holders"))
        return f"kept alive by {_dict(holders[0]).get('holder', '?')}" if holders else None
    if kind in ("threads", "fds"):
        names = sorted({_DIGITS.sub("N", str(name)) for name in _list(evidence.get(f"new_{kind}"))})
        what = "threads" if kind == "threads" else "open file descriptors"
        return f"{what} left behind: {', '.join(names[:3])}" if names else None
    return None


@dataclass
class LeakGroup:
    """Leaking tests with one culprit, highest score first; ``tests[0]`` leads (its evidence is shown)."""

    culprit: str | None
    tests: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def lead(self) -> Mapping[str, Any]:
        return self.tests[0]


def _score(test: Mapping[str, Any]) -> float:
    return finite_number(test.get("leak_score")) or 0.0


def group_leaks(tests: Sequence[Mapping[str, Any]]) -> list[LeakGroup]:
    """The leaking tests of ``tests`` grouped by culprit: groups by their highest score, then by size."""
    groups: dict[str, LeakGroup] = {}
    alone: list[LeakGroup] = []
    for test in sorted((t for t in tests if t.get("leaking")), key=lambda t: (-_score(t), str(t.get("nodeid")))):
        label = culprit(test)
        if label is None:
            alone.append(LeakGroup(None, [test]))
        else:
            groups.setdefault(label, LeakGroup(label, [])).tests.append(test)
    return sorted([*groups.values(), *alone], key=lambda g: (-_score(g.lead), -len(g.tests), str(g.lead.get("nodeid"))))
