"""Charts say their scale, leaks are grouped by culprit, and the tests table is data the page pages through."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from samples import leaking_test, passing_test

from pytest_memtrack.report.charts import axis_chart
from pytest_memtrack.report.culprits import culprit, group_leaks
from pytest_memtrack.report.rows import PAGE_SIZE, TEST_COLUMNS, package_rows, table_of_tests, time_to_limit


def _heights(chart):
    return [float(p.split(",")[1]) for p in chart["points"].split()]


def test_on_a_zero_baseline_a_small_growth_draws_a_small_climb_and_a_large_one_a_large_climb():
    small = axis_chart([(0, 854_835), (1, 855_094)], 200, 44, zero_baseline=True, x_axis="time")
    large = axis_chart([(0, 854_835), (1, 854_835 + 963_584)], 200, 44, zero_baseline=True, x_axis="time")
    small_climb = _heights(small)[0] - _heights(small)[1]
    large_climb = _heights(large)[0] - _heights(large)[1]
    assert 0 <= small_climb < 0.5 and large_climb > 10
    assert small["y_ticks"][0][1] == "0 B" and small["y_ticks"][-1][1] == "835.1 KiB"
    assert [t[1] for t in small["x_ticks"]] == ["0 s", "1 s"]


def test_a_tight_chart_labels_its_bottom_with_the_reading_and_its_top_with_the_growth_above_it():
    chart = axis_chart([(0, 854_835), (1, 855_094)], 280, 96, zero_baseline=False)
    assert [label for _, label in chart["y_ticks"]] == ["834.8 KiB", "+259 B"]
    assert [t[1] for t in chart["x_ticks"]] == ["run 1", "run 2"] and chart["x_title"] == "measured run"
    assert "+259 B" in chart["summary"]


def test_a_flat_or_single_reading_is_drawn_mid_height_and_nothing_to_draw_is_none():
    flat = axis_chart([(0, 5), (1, 5)], 200, 60, zero_baseline=False)
    assert len(set(_heights(flat))) == 1 and [label for _, label in flat["y_ticks"]] == ["5 B"]
    assert axis_chart([(0, None), (1, float("nan"))], 200, 60, zero_baseline=True) is None


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)


@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=60), st.integers(80, 400), st.integers(30, 120),
       st.booleans(), st.sampled_from(["run", "time"]))
def test_every_reading_is_drawn_inside_the_plot_box(pairs, width, height, zero, x_axis):
    chart = axis_chart(pairs, width, height, zero_baseline=zero, x_axis=x_axis)
    box = chart["plot"]
    coords = [tuple(map(float, p.split(","))) for p in chart["points"].split()]
    assert len(coords) == len(pairs)
    assert all(box["x"] - 0.06 <= x <= box["x"] + box["w"] + 0.06 and box["y"] - 0.06 <= y <= box["bottom"] + 0.06
               for x, y in coords)


def _leak(nodeid, site="app/cache.py", line=12, score=0.8):
    test = leaking_test(nodeid)
    test["leak_score"] = score
    test["hunt"]["evidence"]["allocation_sites"] = [{"file": "/usr/lib/python3.11/json/decoder.py", "line": 353,
                                                     "bytes_per_run": 10.0, "count_per_run": 1.0},
                                                    {"file": site, "line": line, "bytes_per_run": 512.0,
                                                     "count_per_run": 1.0}]
    return test


def test_leaks_with_the_same_project_allocation_site_make_one_group_led_by_the_highest_score():
    tests = [_leak("t.py::a", score=0.5), _leak("t.py::b", score=0.9), _leak("t.py::c", "app/other.py", 3, 0.7),
             passing_test("t.py::d", 0.0)]
    groups = group_leaks(tests)
    assert [[t["nodeid"] for t in g.tests] for g in groups] == [["t.py::b", "t.py::a"], ["t.py::c"]]
    assert groups[0].culprit == "allocated at app/cache.py:12"


def test_thread_leaks_group_by_thread_names_without_their_numbers_and_native_leaks_stand_alone():
    one, two = leaking_test("t.py::x"), leaking_test("t.py::y")
    for test, name in ((one, "Thread-3 (poll)"), (two, "Thread-9 (poll)")):
        test["hunt"]["kinds"]["threads"] = {"leaking": True, "score": 1.0, "per_run": 1.0}
        test["hunt"]["evidence"]["new_threads"] = [name]
    assert culprit(one) == culprit(two) == "threads left behind: Thread-N (poll)"
    native = leaking_test("t.py::n")
    native["hunt"]["kinds"] = {"native": {"leaking": True, "score": 0.9, "per_run": 4096.0}}
    assert culprit(native) is None


def test_the_tests_table_is_a_json_block_with_a_first_page_and_filter_counts():
    tests = [leaking_test(f"t.py::leak[{i}]") for i in range(3)]
    tests += [passing_test(f"t.py::ok[{i}]</script><b>", 0.0 if i % 2 else None) for i in range(PAGE_SIZE + 10)]
    tests[-1]["outcome"] = "skipped"
    table = table_of_tests(tests, {"t.py::leak[0]": "leak-1"})
    assert table["total"] == PAGE_SIZE + 13 and len(table["rows"]) == PAGE_SIZE
    assert table["rows"][0]["leaking"] and table["rows"][0]["nodeid"] == "t.py::leak[0]"
    assert dict(table["outcomes"]) == {"failed": 3, "passed": PAGE_SIZE + 9, "skipped": 1}
    assert dict(table["kinds"]) == {"memory": 3} and table["leaking"] == 3 and table["hunted"] == 3 + 105
    assert "<" not in table["data"] and ">" not in table["data"] and "&" not in table["data"]
    data = json.loads(table["data"])
    assert data["columns"] == list(TEST_COLUMNS) and len(data["rows"]) == table["total"]
    assert data["rows"][0][TEST_COLUMNS.index("anchor")] == "leak-1"
    assert any("</script><b>" in row[0] for row in data["rows"])


def test_a_package_forecast_shows_its_time_to_limit_and_a_missing_or_null_one_a_dash():
    assert time_to_limit({"forecast": {"limit_bytes": 1, "growth_rate": 2.0, "seconds_to_limit": 250.0,
                                       "confidence": 0.9}}) == "4 min 10 s"
    assert time_to_limit({"forecast": {"seconds_to_limit": None}}) == "—"
    assert time_to_limit({}) == "—"
    report = {"packages": {"a": {"package_name": "a", "memory_metrics": {}, "forecast": {"seconds_to_limit": 3.0}}}}
    assert package_rows(report, 0.1)[0]["time_to_limit"] == "3.0 s"
