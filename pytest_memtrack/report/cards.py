"""The leak cards of the HTML report and the dashboard: one card per culprit (``culprits.group_leaks``), with the
leading test's evidence, every test of the group, and the raw failure message folded away (the card already says
the same facts in parts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_memtrack.report.charts import axis_chart
from pytest_memtrack.report.culprits import LeakGroup, group_leaks
from pytest_memtrack.report.formatting import format_bytes, format_count, format_duration, format_score, short_path
from pytest_memtrack.report.verdict import KINDS, advice, lead_kind, per_run_text, reproduce
from pytest_memtrack.units import MISSING, finite_number

#: Evidence rows shown per list.
TOP_EVIDENCE = 5
#: Tests listed in a card before the rest are folded.
OPEN_TESTS = 8


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def summary_of_test(test: Mapping[str, Any]) -> dict[str, Any]:
    """A test's headline figures as shown in a card's list and the dashboard."""
    kinds = _dict(_dict(test.get("hunt")).get("kinds"))
    lead = lead_kind(test)
    return {
        "nodeid": str(test.get("nodeid", "?")),
        "outcome": str(test.get("outcome") or "?"),
        "score": format_score(test.get("leak_score")),
        "limit": format_score(test.get("limit")),
        "per_run": per_run_text(lead, _dict(kinds.get(lead)).get("per_run")) if lead else MISSING,
        "kind": lead or "",
        "duration": format_duration(test.get("duration")),
        "worker": test.get("worker"),
        "reproduce": reproduce(test),
    }


def _kind_rows(kinds: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, unit in KINDS:
        kind = _dict(kinds.get(name))
        if not kind:
            continue
        per_run = finite_number(kind.get("per_run"))
        hint = ""
        if per_run is not None and per_run < 0:
            hint = (f"The reading fell by {format_bytes(-per_run) if unit == 'bytes' else format_count(-per_run)} "
                    "per run: memory given back (to the allocator, the OS), which is no leak and no growth.")
        rows.append({"name": name, "leaking": bool(kind.get("leaking")), "score": format_score(kind.get("score")),
                     "per_run": per_run_text(name, per_run), "hint": hint})
    return rows


def leak_card(group: LeakGroup, index: int, rootdir: Any = None, native_reading: str | None = None) -> dict[str, Any]:
    """Everything one card shows for ``group``; ``index`` makes its anchor (``leak-1``, ``leak-2``, ...)."""
    test = group.lead
    hunt = _dict(test.get("hunt"))
    evidence = _dict(hunt.get("evidence"))
    readings = [_dict(r) for r in _list(hunt.get("readings"))]
    tests = [summary_of_test(t) for t in group.tests]
    return {
        **tests[0],
        "anchor": f"leak-{index}",
        "culprit": group.culprit,
        "tests": tests,
        "open_tests": OPEN_TESTS,
        "message": test.get("message"),
        "hunt_error": hunt.get("error"),
        "runs": hunt.get("runs"),
        "warmup_runs": hunt.get("warmup_runs"),
        "kinds": _kind_rows(_dict(hunt.get("kinds"))),
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
        "traced_chart": axis_chart([(i, r.get("traced")) for i, r in enumerate(readings)], 280, 96,
                                   zero_baseline=False),
        "rss_chart": axis_chart([(i, r.get("rss")) for i, r in enumerate(readings)], 280, 96, zero_baseline=False),
        "next_step": advice(test, native_reading),
    }


def leak_cards(tests: Sequence[Mapping[str, Any]], rootdir: Any = None,
               native_reading: str | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The cards of the leaking tests in ``tests``, and each leaking test's card anchor by node id."""
    cards, anchors = [], {}
    for index, group in enumerate(group_leaks(tests), start=1):
        card = leak_card(group, index, rootdir, native_reading)
        cards.append(card)
        for item in card["tests"]:
            anchors[item["nodeid"]] = card["anchor"]
    return cards, anchors
