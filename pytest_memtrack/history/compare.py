"""Baseline comparison: the compare-fail rule grammar, the figures of a report, the comparison and its table.

Everything here is pure: plain data in (report dicts, see docs/report-format.md), typed results out. The plugin
(``history.py``) and the offline ``pytest-memtrack compare`` command share it.

Rule grammar (``--memtrack-compare-fail=RULE``, repeatable; ini ``memtrack_compare_fail``, one rule a line)::

    RULE      := [SCOPE ":"] FIGURE ":" TOLERANCE
    SCOPE     := "test" | "package"            only needed to narrow leak_score, which has both
    FIGURE    := footprint | current | peak    per package, bytes (memory_footprint, current/peak usage)
               | total                         the session: summary.total_current_memory, bytes
               | rss_delta                     per test, bytes (RSS after teardown minus before setup)
               | leak_score                    per test and per package, 0..1
               | leaking                       the session: how many tests were found leaking
    TOLERANCE := NUMBER "%"                    relative growth allowed: footprint:10%  (byte figures only)
               | NUMBER UNIT                   absolute growth allowed: peak:5MB, rss_delta:512KB (byte figures only;
                                               binary units B, KB/KiB, MB/MiB, GB/GiB)
               | NUMBER                        absolute growth allowed: bytes for byte figures (rss_delta:100),
                                               a score or a count otherwise (leak_score:0.1, leaking:0)

A figure regresses when ``current > baseline + allowance`` (growth of exactly the tolerance passes; shrinking
never fails). A figure present in the baseline but missing now is not a regression; tests and packages that the
baseline did not have are listed as new and never regress.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memtrack import units
from pytest_memtrack.report.lines import fit

#: figure -> the kinds of rows it exists for, and whether its values are bytes.
FIGURES: dict[str, tuple[tuple[str, ...], bool]] = {
    "footprint": (("package",), True),
    "current": (("package",), True),
    "peak": (("package",), True),
    "total": (("total",), True),
    "rss_delta": (("test",), True),
    "leak_score": (("test", "package"), False),
    "leaking": (("total",), False),
}
SCOPES = ("test", "package")

#: How many unregressed rows (largest changes first) a comparison keeps, to keep reports small.
TOP_CHANGES = 50
#: How many new test/package names a comparison lists.
MAX_NEW = 50

_TOLERANCE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>%|[a-zA-Z]+)?")


class RuleError(ValueError):
    """A compare-fail rule that does not follow the grammar; the message is a sentence."""


@dataclass(frozen=True)
class Rule:
    """One parsed compare-fail rule."""

    figure: str
    scope: str | None  # None: every kind the figure exists for
    amount: float
    percent: bool
    text: str  # the rule as written (figure and scope lower-cased, blanks removed), e.g. "footprint:10%"

    def applies_to(self, kind: str, figure: str) -> bool:
        return figure == self.figure and (self.scope is None or self.scope == kind)

    def limit(self, baseline: float) -> float:
        """The highest current value this rule lets pass."""
        if self.percent:
            return baseline + abs(baseline) * self.amount / 100.0
        return baseline + self.amount


def parse_rule(text: str) -> Rule:
    """Parse ``[SCOPE:]FIGURE:TOLERANCE``; raise :class:`RuleError` with a sentence on anything else."""
    if not isinstance(text, str):
        raise RuleError(f"a compare-fail rule must be text such as 'footprint:10%', not {text!r}.")
    raw = text.strip()
    parts = [p.strip() for p in raw.split(":")]
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        raise RuleError(
            f"compare-fail rule {text!r} must look like FIGURE:TOLERANCE (e.g. 'footprint:10%', 'leak_score:0.1')."
        )
    scope = None
    if len(parts) == 3:
        scope, figure, tolerance = parts[0].lower(), parts[1].lower(), parts[2]
        if scope not in SCOPES:
            raise RuleError(f"compare-fail rule {text!r}: scope {parts[0]!r} must be 'test' or 'package'.")
    else:
        figure, tolerance = parts[0].lower(), parts[1]
    if figure not in FIGURES:
        raise RuleError(
            f"compare-fail rule {text!r}: unknown figure {figure!r}; choose one of {', '.join(FIGURES)}."
        )
    kinds, is_bytes = FIGURES[figure]
    if scope is not None and scope not in kinds:
        raise RuleError(f"compare-fail rule {text!r}: figure {figure!r} has no {scope} values (it is per "
                        f"{' and '.join(kinds)}).")
    if tolerance.startswith("-"):
        raise RuleError(f"compare-fail rule {text!r}: the tolerance must not be negative.")
    match = _TOLERANCE.fullmatch(tolerance.replace(" ", ""))
    if not match:
        raise RuleError(
            f"compare-fail rule {text!r}: tolerance {tolerance!r} must be a percentage (10%), a size (5MB) "
            "or a plain number (0.1)."
        )
    amount = float(match.group("number"))
    unit = (match.group("unit") or "").lower()
    if not math.isfinite(amount):
        raise RuleError(f"compare-fail rule {text!r}: the tolerance must be a finite number.")
    percent = unit == "%"
    if percent or unit in units.SIZE_UNITS:
        if not is_bytes:
            raise RuleError(
                f"compare-fail rule {text!r}: {figure} takes an absolute tolerance as a plain number "
                f"(e.g. '{figure}:{'0.1' if figure == 'leak_score' else '0'}'), not {tolerance!r}."
            )
        if not percent:
            amount *= units.SIZE_UNITS[unit]
    elif unit:
        raise RuleError(
            f"compare-fail rule {text!r}: unknown unit {match.group('unit')!r}; use %, B, KB, MB or GB."
        )
    canonical = f"{scope + ':' if scope else ''}{figure}:{tolerance.replace(' ', '')}"
    return Rule(figure=figure, scope=scope, amount=amount, percent=percent, text=canonical)


def parse_rules(texts: Iterable[str]) -> list[Rule]:
    return [parse_rule(t) for t in texts]


# -- figures --------------------------------------------------------------------------------------------------------

FigureKey = tuple[str, str, str]  # (kind, name, figure)

_PACKAGE_METRICS = {"current": "current_memory_usage", "peak": "peak_memory_usage",
                    "footprint": "memory_footprint", "leak_score": "memory_leak_score"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def extract_figures(report: Mapping[str, Any]) -> dict[FigureKey, float]:
    """Every comparable figure of a report: {(kind, name, figure): value}. Missing or null values are left out."""
    figures: dict[FigureKey, float] = {}
    for name, entry in (report.get("packages") or {}).items():
        metrics = (entry or {}).get("memory_metrics") or {}
        for figure, key in _PACKAGE_METRICS.items():
            value = _number(metrics.get(key))
            if value is not None:
                figures[("package", str(name), figure)] = value
    tests = report.get("tests") or []
    for test in tests:
        nodeid = str(test.get("nodeid"))
        for figure in ("rss_delta", "leak_score"):
            value = _number(test.get(figure))
            if value is not None:
                figures[("test", nodeid, figure)] = value
    total = _number((report.get("summary") or {}).get("total_current_memory"))
    if total is not None:
        figures[("total", "session", "total")] = total
    if tests or report.get("tests") is not None:
        figures[("total", "session", "leaking")] = float(sum(1 for t in tests if t.get("leaking")))
    return figures


def _names(report: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    return ({str(t.get("nodeid")) for t in report.get("tests") or []}, {str(n) for n in report.get("packages") or {}})


# -- comparison -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    kind: str  # "test" | "package" | "total"
    name: str
    figure: str
    baseline: float
    current: float
    limit: float | None  # the highest current value the strictest applicable rule lets pass; None: no rule
    regressed: bool

    @property
    def change(self) -> float:
        return self.current - self.baseline

    @property
    def relative(self) -> float | None:
        return None if self.baseline == 0 else self.change / abs(self.baseline)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "figure": self.figure, "baseline": self.baseline,
                "current": self.current, "change": self.change, "limit": self.limit, "regressed": self.regressed}


@dataclass(frozen=True)
class Comparison:
    baseline: dict[str, Any] | None  # {id, name, time, commit, machine, python}
    rows: list[Row]
    rules: list[str]
    new: list[tuple[str, str]] = field(default_factory=list)  # (kind, name), at most MAX_NEW
    new_count: int = 0
    changed_count: int = 0  # rows that changed before trimming

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regressed]

    def as_dict(self) -> dict[str, Any]:
        """The ``report["comparison"]`` payload (plain built-in types)."""
        return {
            "baseline": dict(self.baseline) if self.baseline is not None else None,
            "rows": [r.as_dict() for r in self.rows],
            "regressions": len(self.regressions),
            "rules": list(self.rules),
            "new": [{"kind": k, "name": n} for k, n in self.new],
            "new_count": self.new_count,
        }


def _change_rank(row: Row) -> tuple[float, float]:
    rel = row.relative
    return (math.inf if rel is None else abs(rel), abs(row.change))


def compare_reports(baseline: Mapping[str, Any], current: Mapping[str, Any], rules: Sequence[Rule] = (),
                    baseline_info: Mapping[str, Any] | None = None, top: int = TOP_CHANGES) -> Comparison:
    """Compare two report models figure by figure under ``rules``.

    Kept rows: every regressed row, plus the ``top`` largest other changes (relative change first).
    """
    before = extract_figures(baseline)
    after = extract_figures(current)
    regressed: list[Row] = []
    changed: list[Row] = []
    for key, now in after.items():
        if key not in before:
            continue
        kind, name, figure = key
        was = before[key]
        limits = [rule.limit(was) for rule in rules if rule.applies_to(kind, figure)]
        limit = min(limits) if limits else None
        # A hair of slack so that growth of exactly the tolerance passes despite float rounding.
        is_regressed = limit is not None and now > limit + 1e-9 * max(1.0, abs(limit))
        row = Row(kind, name, figure, was, now, limit, is_regressed)
        if is_regressed:
            regressed.append(row)
        elif now != was:
            changed.append(row)
    changed.sort(key=_change_rank, reverse=True)
    regressed.sort(key=_change_rank, reverse=True)
    tests_before, packages_before = _names(baseline)
    tests_now, packages_now = _names(current)
    new = sorted(("package", n) for n in packages_now - packages_before)
    new += sorted(("test", n) for n in tests_now - tests_before)
    return Comparison(
        baseline=dict(baseline_info) if baseline_info is not None else None,
        rows=regressed + changed[:max(0, top)],
        rules=[r.text for r in rules],
        new=new[:MAX_NEW],
        new_count=len(new),
        changed_count=len(regressed) + len(changed),
    )


# -- rendering ------------------------------------------------------------------------------------------------------

def format_value(figure: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if FIGURES.get(figure, ((), True))[1]:
        return units.format_bytes(value, signed=signed, decimals=2)  # a gate's table shows small changes
    if figure == "leaking":
        text = str(int(value))
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _change_text(row: Mapping[str, Any]) -> str:
    change = row["current"] - row["baseline"]
    text = format_value(row["figure"], change, signed=True)
    if row["baseline"]:
        text += f" ({change / abs(row['baseline']):+.1%})"
    return text


def _limit_text(row: Mapping[str, Any]) -> str:
    return "-" if row.get("limit") is None else "<= " + format_value(row["figure"], row["limit"])


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


_FIGURE_HEADER = ("figure", "baseline", "current", "change", "limit", "result")
_RIGHT = {1, 2, 3, 4}  # of the figure columns: the numbers


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    return (row["figure"], format_value(row["figure"], row["baseline"]), format_value(row["figure"], row["current"]),
            _change_text(row), _limit_text(row), "REGRESSED" if row.get("regressed") else "ok")


def _join(cells: Sequence[str], widths: Sequence[int], right: set[int], gap: str) -> str:
    return gap.join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def render_table(rows: Sequence[Mapping[str, Any] | Row], name_width: int = 60, width: int | None = None) -> str:
    """A plain-text table of comparison rows (dicts as in ``report["comparison"]["rows"]`` or :class:`Row`), a
    header over every column. Within ``width`` columns (None: no limit) a row is one line, name first; when that is
    too wide, each name gets a line of its own with its figures indented under it."""
    dicts = [r.as_dict() if isinstance(r, Row) else r for r in rows]
    labels = [_shorten(r["name"] if r["kind"] != "package" else f"[package] {r['name']}", name_width) for r in dicts]
    cells = [_cells(r) for r in dicts]
    flat = [("name", *_FIGURE_HEADER)] + [(label, *c) for label, c in zip(labels, cells)]
    widths = [max(len(line[i]) for line in flat) for i in range(len(flat[0]))]
    if width is None or sum(widths) + 2 * (len(widths) - 1) <= width:
        right = {i + 1 for i in _RIGHT}
        out = [_join(line, widths, right, "  ") for line in flat]
        out.insert(1, "  ".join("-" * w for w in widths).rstrip())
        return "\n".join(out)
    indent = "  "
    figure_lines = [_FIGURE_HEADER, *cells]
    widths = [max(len(line[i]) for line in figure_lines) for i in range(len(_FIGURE_HEADER))]
    widths[0] += len(indent)
    gap = "  " if sum(widths) + 2 * (len(widths) - 1) <= width else " "
    out = [_join(("name / figure", *_FIGURE_HEADER[1:]), widths, _RIGHT, gap),
           gap.join("-" * w for w in widths)]
    previous = None
    for label, row_cells in zip(labels, cells):
        if label != previous:
            out.append(label)
            previous = label
        out.append(_join((indent + row_cells[0], *row_cells[1:]), widths, _RIGHT, gap))
    return "\n".join(out)


def describe_baseline(baseline: Mapping[str, Any] | None) -> str:
    """``run #3 'main' (commit 1a2b3c4d5e, x86_64, Python 3.11.7)``."""
    if not baseline:
        return "no baseline"
    parts = [f"run #{baseline.get('id')}" if baseline.get("id") is not None else "report"]
    if baseline.get("name"):
        parts.append(repr(baseline["name"]))
    details = []
    if baseline.get("commit"):
        details.append(f"commit {str(baseline['commit'])[:10]}")
    if baseline.get("machine"):
        details.append(str(baseline["machine"]))
    if baseline.get("python"):
        details.append(f"Python {baseline['python']}")
    text = " ".join(parts)
    return text + (f" ({', '.join(details)})" if details else "")


def render_summary(comparison: Mapping[str, Any], all_rows: bool = False, width: int | None = None) -> str:
    """Heading line, then the regressions table (or every kept row with ``all_rows``), then the new entries; every
    line within ``width`` columns (None: no limit)."""
    rows = comparison.get("rows") or []
    regressed = [r for r in rows if r.get("regressed")]
    count = int(comparison.get("regressions", len(regressed)) or 0)
    rules = ", ".join(comparison.get("rules") or []) or "no rules"
    lines = fit(f"compared with {describe_baseline(comparison.get('baseline'))} under {rules}: "
                f"{units.plural(count, 'regression')}", width)
    shown = rows if all_rows else regressed
    if shown:
        lines.append(render_table(shown, width=width))
    new_count = comparison.get("new_count") or 0
    if new_count:
        names = [n["name"] for n in comparison.get("new") or []][:10]
        rest = new_count - len(names)
        lines += fit(f"new since the baseline (not compared): {', '.join(names)}"
                     + (f" and {rest} more" if rest > 0 else ""), width)
    return "\n".join(lines)
