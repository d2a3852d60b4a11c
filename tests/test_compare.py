"""The compare-fail grammar, the figures of a report, the comparison maths and the table (pure, no session)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import empty_report, sample_report

from pytest_memtrack.history.compare import (
    FIGURES,
    MAX_NEW,
    RuleError,
    compare_reports,
    extract_figures,
    parse_rule,
    parse_rules,
    render_summary,
    render_table,
)

BYTE_FIGURES = [f for f, (_, is_bytes) in FIGURES.items() if is_bytes]
NUMBER_FIGURES = [f for f, (_, is_bytes) in FIGURES.items() if not is_bytes]


# -- grammar --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "figure", "scope", "amount", "percent"), [
    ("footprint:10%", "footprint", None, 10.0, True),
    ("peak:5MB", "peak", None, 5 * 1024**2, False),
    ("current:512KB", "current", None, 512 * 1024, False),
    ("rss_delta:100", "rss_delta", None, 100.0, False),
    ("total:1.5GiB", "total", None, 1.5 * 1024**3, False),
    ("leak_score:0.1", "leak_score", None, 0.1, False),
    ("test:leak_score:0.05", "leak_score", "test", 0.05, False),
    ("package:leak_score:0", "leak_score", "package", 0.0, False),
    ("leaking:0", "leaking", None, 0.0, False),
    (" Footprint : 10 % ", "footprint", None, 10.0, True),
])
def test_valid_rules_parse_into_figure_scope_and_tolerance(text, figure, scope, amount, percent):
    rule = parse_rule(text)
    assert (rule.figure, rule.scope, rule.amount, rule.percent) == (figure, scope, amount, percent)


@pytest.mark.parametrize(("text", "words"), [
    ("footprint", "must look like FIGURE:TOLERANCE"),
    ("footprint:abc", "must be a percentage"),
    ("nosuch:5%", "unknown figure 'nosuch'"),
    ("footprint:-5%", "must not be negative"),
    ("footprint:", "must look like FIGURE:TOLERANCE"),
    (":5%", "must look like FIGURE:TOLERANCE"),
    ("a:b:c:d", "must look like FIGURE:TOLERANCE"),
    ("footprint:5XB", "unknown unit 'XB'"),
    ("leak_score:10%", "absolute tolerance as a plain number"),
    ("leaking:1MB", "absolute tolerance as a plain number"),
    ("world:leak_score:0.1", "scope 'world' must be 'test' or 'package'"),
    ("test:footprint:10%", "has no test values"),
    ("package:rss_delta:10%", "has no package values"),
    ("footprint:nan%", "must be a percentage"),
    ("footprint:inf", "must be a percentage"),
])
def test_bad_rules_are_rejected_with_a_sentence_that_quotes_the_rule(text, words):
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    message = str(info.value)
    assert words in message
    assert repr(text) in message
    assert message.endswith(".")


_tolerances = st.one_of(
    st.integers(0, 10**6).map(lambda n: (f"{n}%", True)),
    st.integers(0, 10**6).map(lambda n: (f"{n}", False)),
    st.tuples(st.integers(0, 4096), st.sampled_from(["B", "KB", "kib", "MB", "GiB"])).map(
        lambda t: (f"{t[0]}{t[1]}", False)),
)


@given(st.sampled_from(BYTE_FIGURES), _tolerances)
def test_every_byte_rule_round_trips_through_its_own_text(figure, tolerance):
    rule = parse_rule(f"{figure}:{tolerance[0]}")
    assert rule.percent is tolerance[1]
    assert parse_rule(rule.text) == rule


@given(st.sampled_from(NUMBER_FIGURES), st.floats(0, 1e6, allow_nan=False), st.sampled_from([None, "test", "package"]))
def test_every_score_rule_round_trips_through_its_own_text(figure, amount, scope):
    kinds = FIGURES[figure][0]
    text = f"{scope + ':' if scope else ''}{figure}:{amount!r}"
    if scope is not None and scope not in kinds:
        with pytest.raises(RuleError):
            parse_rule(text)
        return
    if "e" in repr(amount):
        with pytest.raises(RuleError):  # no exponents: tolerances are written plainly
            parse_rule(text)
        return
    rule = parse_rule(text)
    assert rule.amount == pytest.approx(amount) and parse_rule(rule.text) == rule


@settings(max_examples=300)
@given(st.text(max_size=30))
def test_garbage_is_either_a_valid_rule_or_a_rule_error_never_a_crash(text):
    try:
        rule = parse_rule(text)
    except RuleError as exc:
        assert str(exc).endswith(".")
    else:
        assert rule.figure in FIGURES and rule.amount >= 0


def test_parse_rules_parses_each_rule_in_order():
    assert [r.figure for r in parse_rules(["leaking:0", "footprint:1%"])] == ["leaking", "footprint"]


# -- figures --------------------------------------------------------------------------------------------------------

def test_figures_cover_packages_tests_the_total_and_the_leaking_count():
    figures = extract_figures(sample_report())
    assert figures[("package", "app", "footprint")] == 1_600_000
    assert figures[("package", "app", "current")] == 2_000_000
    assert figures[("package", "app", "peak")] == pytest.approx(2_400_000)
    assert figures[("package", "app", "leak_score")] == 0.62
    assert figures[("test", "tests/test_app.py::test_leaks_a_cache_entry_per_request", "rss_delta")] == 400_000
    assert figures[("test", "tests/test_app.py::test_warm_cache", "leak_score")] == 0.0
    assert ("test", "tests/test_app.py::test_plain", "leak_score") not in figures  # not hunted: null
    assert figures[("total", "session", "total")] == 3_020_000
    assert figures[("total", "session", "leaking")] == 1


def test_an_empty_report_has_only_session_figures():
    assert set(extract_figures(empty_report())) == {("total", "session", "total"), ("total", "session", "leaking")}


# -- comparison maths -----------------------------------------------------------------------------------------------

def _grown(report, factor):
    grown = copy.deepcopy(report)
    grown["packages"]["app"]["memory_metrics"]["memory_footprint"] *= factor
    return grown


@pytest.mark.parametrize(("growth", "regressed"), [(1.09, False), (1.10, False), (1.11, True), (0.5, False)])
def test_a_ten_percent_rule_passes_nine_percent_growth_and_fails_eleven(growth, regressed):
    base = sample_report()
    comparison = compare_reports(base, _grown(base, growth), parse_rules(["footprint:10%"]))
    assert bool(comparison.regressions) is regressed
    if regressed:
        (row,) = comparison.regressions
        assert (row.kind, row.name, row.figure) == ("package", "app", "footprint")
        assert row.limit == pytest.approx(1_760_000)


@given(st.integers(1, 10**9), st.integers(0, 200), st.integers(0, 300))
def test_percentage_rules_fail_exactly_when_growth_exceeds_the_tolerance(base, tolerance, growth_pct):
    before = sample_report()
    before["summary"]["total_current_memory"] = base
    after = copy.deepcopy(before)
    after["summary"]["total_current_memory"] = base * (100 + growth_pct) / 100
    comparison = compare_reports(before, after, parse_rules([f"total:{tolerance}%"]))
    assert bool(comparison.regressions) is (growth_pct > tolerance)


def test_absolute_byte_and_score_tolerances_are_added_to_the_baseline():
    before = sample_report()
    after = copy.deepcopy(before)
    nodeid = before["tests"][0]["nodeid"]
    after["tests"][0]["rss_delta"] = 400_000 + 100 * 1024  # exactly 100KB more: passes
    after["tests"][0]["leak_score"] = 0.95  # +0.12 > 0.1: fails
    comparison = compare_reports(before, after, parse_rules(["rss_delta:100KB", "leak_score:0.1"]))
    assert [(r.name, r.figure) for r in comparison.regressions] == [(nodeid, "leak_score")]


def test_leaking_counts_compare_absolutely():
    before = sample_report()
    after = copy.deepcopy(before)
    after["tests"][1]["leaking"] = True
    assert compare_reports(before, after, parse_rules(["leaking:1"])).regressions == []
    (row,) = compare_reports(before, after, parse_rules(["leaking:0"])).regressions
    assert (row.baseline, row.current, row.limit) == (1, 2, 1)


def test_scoped_rules_apply_only_to_their_kind():
    before = sample_report()
    after = copy.deepcopy(before)
    after["packages"]["app"]["memory_metrics"]["memory_leak_score"] = 0.99
    assert compare_reports(before, after, parse_rules(["test:leak_score:0"])).regressions == []
    assert len(compare_reports(before, after, parse_rules(["package:leak_score:0"])).regressions) == 1


def test_the_strictest_of_several_rules_on_one_figure_sets_the_limit():
    before = sample_report()
    comparison = compare_reports(before, _grown(before, 1.5), parse_rules(["footprint:100%", "footprint:1KB"]))
    assert comparison.regressions[0].limit == 1_600_000 + 1024


def test_missing_figures_are_not_regressions_and_new_entries_are_listed_as_new():
    before = sample_report()
    after = copy.deepcopy(before)
    del after["packages"]["json"]
    after["tests"].pop(0)  # the leaking test is gone
    after["packages"]["fresh"] = copy.deepcopy(before["packages"]["json"])
    after["tests"].append(dict(before["tests"][2], nodeid="tests/test_new.py::test_new"))
    comparison = compare_reports(before, after, parse_rules(["footprint:0", "leak_score:0", "rss_delta:0"]))
    assert comparison.regressions == []
    assert comparison.new == [("package", "fresh"), ("test", "tests/test_new.py::test_new")]
    assert comparison.new_count == 2


def test_the_payload_keeps_regressions_plus_the_top_fifty_changes_and_is_json_able():
    before = empty_report()
    before["tests"] = [dict(sample_report()["tests"][2], nodeid=f"t::{i}", rss_delta=1000) for i in range(200)]
    after = copy.deepcopy(before)
    for i, test in enumerate(after["tests"]):
        test["rss_delta"] = 1000 + i
        test["nodeid"] = test["nodeid"] if i < 150 else f"new::{i}"
    data = compare_reports(before, after, parse_rules(["rss_delta:100"]), {"id": 1}).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) >= {"baseline", "rows", "regressions", "rules"}
    assert data["regressions"] == 49  # 101..149 bytes more
    assert len(data["rows"]) == 49 + 50
    assert all(r["regressed"] for r in data["rows"][:49]) and not any(r["regressed"] for r in data["rows"][49:])
    assert data["rows"][0]["name"] == "t::149" and data["rows"][0]["change"] == 149
    assert data["new_count"] == 50 and len(data["new"]) == MAX_NEW
    assert data["rules"] == ["rss_delta:100"]


# -- rendering ------------------------------------------------------------------------------------------------------

def test_the_regressions_table_has_a_header_and_one_line_per_regressed_row():
    before = sample_report()
    comparison = compare_reports(before, _grown(before, 1.2), parse_rules(["footprint:10%"]),
                                 {"id": 7, "name": "main", "commit": "0123456789abcdef", "machine": "m", "python": "3.11"})
    text = render_summary(comparison.as_dict())
    lines = text.splitlines()
    assert lines[0] == "compared with run #7 'main' (commit 0123456789, m, Python 3.11) under footprint:10%: 1 regression"
    assert lines[1].split() == ["name", "figure", "baseline", "current", "change", "limit", "result"]
    assert set(lines[2]) <= {"-", " "}
    assert lines[3].split()[:3] == ["[package]", "app", "footprint"]
    assert "(+20.0%)" in lines[3] and "<= 1.68 MiB" in lines[3] and lines[3].endswith("REGRESSED")
    assert len(lines) == 4


def test_scores_and_counts_render_as_numbers_and_long_names_are_shortened():
    rows = [{"kind": "test", "name": "x" * 100, "figure": "leak_score", "baseline": 0.1, "current": 0.5,
             "change": 0.4, "limit": 0.2, "regressed": True},
            {"kind": "total", "name": "session", "figure": "leaking", "baseline": 0, "current": 2, "change": 2,
             "limit": None, "regressed": False}]
    lines = render_table(rows).splitlines()
    assert lines[2].startswith("..." + "x" * 57) and "+0.400 (+400.0%)" in lines[2] and "<= 0.200" in lines[2]
    assert lines[3].split() == ["session", "leaking", "0", "2", "+2", "-", "ok"]
