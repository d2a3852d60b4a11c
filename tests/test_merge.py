"""``pytest-memtrack merge``: the reports of CI shards as one report of the whole run."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from samples import T0, package_entry, sample_report

from pytest_memtrack import schemas
from pytest_memtrack.cli import main
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.report.merge import Shard, merge_reports, merged_exitstatus
from pytest_memtrack.server.sources import ReportSource
from pytest_memtrack.server.transport import start_server
from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.tracking.merge import import_packages

SHARD_ONE = """
import pytest

KEEP = []


@pytest.mark.max_leak_score(0.1)
def test_keeps_a_block_per_call():
    KEEP.append(bytearray(50_000))


def test_one_plain():
    assert True
"""

SHARD_TWO = """
def test_two_plain():
    assert sum(range(10)) == 45


def test_two_more():
    assert "x" * 3 == "xxx"
"""


@pytest.fixture
def two_shards(pytester) -> tuple[Path, Path]:
    """Two real shard reports: one shard's tests (one of them leaks) and the other's, each its own session."""
    pytester.makepyfile(test_one=SHARD_ONE, test_two=SHARD_TWO)
    pytester.makeini("[pytest]\n")
    first = pytester.runpytest("--memtrack", "--memtrack-json=shard-1/memtrack.json", "test_one.py")
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # the leak fails its marker
    second = pytester.runpytest("--memtrack", "--memtrack-json=shard-2/memtrack.json", "test_two.py")
    assert second.ret == pytest.ExitCode.OK
    return pytester.path / "shard-1" / "memtrack.json", pytester.path / "shard-2" / "memtrack.json"


def _merge(tmp_path: Path, *paths: Path) -> dict[str, Any]:
    out = tmp_path / "all.json"
    assert main(["merge", *map(str, paths), "-o", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_real_shards_merge_into_one_valid_report_with_every_test_once(two_shards, tmp_path, capsys):
    one, two = two_shards
    merged = _merge(tmp_path, one, two)
    schemas.validate("report", merged)
    load_report(str(tmp_path / "all.json"))  # what html, serve and compare read
    out = capsys.readouterr().out
    assert "merged 2 shards: 4 tests (1 leaking)" in out and str(tmp_path / "all.json") in out
    nodeids = [t["nodeid"] for t in merged["tests"]]
    assert sorted(nodeids) == sorted(["test_one.py::test_keeps_a_block_per_call", "test_one.py::test_one_plain",
                                      "test_two.py::test_two_plain", "test_two.py::test_two_more"])
    shards = {t["nodeid"]: t["shard"] for t in merged["tests"]}
    assert shards["test_one.py::test_one_plain"] == str(one) and shards["test_two.py::test_two_more"] == str(two)
    leaking = [t for t in merged["tests"] if t["leaking"]]
    assert [t["nodeid"] for t in leaking] == ["test_one.py::test_keeps_a_block_per_call"]
    assert leaking[0]["hunt"]["kinds"]["memory"]["per_run"] > 40_000  # the shard's measured hunt, carried whole
    run = merged["run"]
    assert run["merged_from"] == 2 and [s["source"] for s in run["shards"]] == [str(one), str(two)]
    assert [s["tests"] for s in run["shards"]] == [2, 2]
    assert run["exitstatus"] == 1 and run["interrupted"] is False
    reports = [json.loads(p.read_text()) for p in (one, two)]
    assert run["started"] == min(r["run"]["started"] for r in reports)
    assert run["finished"] == max(r["run"]["finished"] for r in reports)
    # Packages both shards tracked are totals over the two processes, as for xdist workers.
    for name, entry in merged["packages"].items():
        footprints = [r["packages"][name]["memory_metrics"]["memory_footprint"] for r in reports
                      if name in r["packages"] and r["packages"][name]["memory_metrics"]["memory_footprint"]]
        assert entry["memory_metrics"]["memory_footprint"] == (sum(footprints) if footprints else None)


@pytest.mark.slow
def test_html_and_serve_accept_a_merged_report(two_shards, tmp_path):
    merged = _merge(tmp_path, *two_shards)
    page = tmp_path / "all.html"
    assert main(["html", str(tmp_path / "all.json"), "-o", str(page)]) == 0
    html = page.read_text()
    assert "test_keeps_a_block_per_call" in html and "test_two_more" in html
    source = ReportSource(load_report(str(tmp_path / "all.json")))
    with start_server(source, "127.0.0.1", 0, mode="saved report") as running:
        with urllib.request.urlopen(f"{running.url}api/packages/memory/summary", timeout=10) as response:
            body = json.loads(response.read())
    assert body["status"] == "success"
    assert body["data"]["total_packages"] == merged["summary"]["total_packages"]


def _shard(tests: list[str], packages: dict[str, list[list[float]]], *, started: float = T0,
           python: str = "3.11.7", pressure: str = "low", interrupted: bool = False,
           exitstatus: int | None = 0) -> dict[str, Any]:
    """A shard's report with these tests and these package histories ([time, bytes] from ``started``)."""
    report = sample_report()
    report["run"].update(started=started, finished=started + 10, python=python, interrupted=interrupted,
                         exitstatus=exitstatus)
    report["run"]["config"] = {"max_leak_score": None, "leak_threshold": 0.1, "history_size": 100}
    report["summary"]["system_memory_pressure"] = pressure
    report["tests"] = [{**report["tests"][1], "nodeid": nodeid} for nodeid in tests]
    report["packages"] = {}
    report["package_histories"] = {}
    for name, points in packages.items():
        history = [[started + t, b] for t, b in points]
        entry = package_entry(name, history[-1][1], checks=len(history))
        entry["memory_metrics"]["memory_footprint"] = 1000.0
        report["packages"][name] = entry
        report["package_histories"][name] = history
    return report


FLAT = [[t, 100_000.0] for t in range(1, 9)]
GROWING = [[t, 100_000.0 + 200_000.0 * t] for t in range(1, 9)]


def test_package_figures_are_totals_over_the_shards_and_leaks_are_recomputed():
    a = _shard(["t.py::a"], {"app": GROWING, "json": FLAT})
    b = _shard(["t.py::b"], {"app": FLAT, "json": FLAT})
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    schemas.validate("report", merged)
    app, js = merged["packages"]["app"]["memory_metrics"], merged["packages"]["json"]["memory_metrics"]
    assert app["current_memory_usage"] == GROWING[-1][1] + FLAT[-1][1]
    assert js["current_memory_usage"] == 200_000.0 and js["memory_footprint"] == 2000.0
    assert app["memory_leak_score"] >= 0.1 and js["memory_leak_score"] == 0.0
    assert [leak["package_name"] for leak in merged["leaks"]["leaks"]] == ["app"]
    assert [s["package_name"] for s in merged["suggestions"]["suggestions"]] == ["app"]
    assert merged["summary"]["total_current_memory"] == app["current_memory_usage"] + js["current_memory_usage"]


def test_the_packages_are_combined_by_the_xdist_combination_itself():
    a = _shard(["t.py::a"], {"app": GROWING})
    b = _shard(["t.py::b"], {"app": FLAT})
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    records = [{"packages": [{"name": "app", "status": "loaded", "observed": True, "error": None, "load_time": None,
                              "footprint": 1000.0, "peak": p["app"]["memory_metrics"]["peak_memory_usage"],
                              "pressure": "low", "checks": 8, "history": h["app"], "leak_tests": {}}]}
               for p, h in ((a["packages"], a["package_histories"]), (b["packages"], b["package_histories"]))]
    workers = import_packages(records, like=LazyLoader(leak_threshold=0.1))
    expected = workers.get_package_info("app")
    assert expected is not None
    assert merged["packages"]["app"]["memory_metrics"] == expected.get_memory_summary()["memory_metrics"]


def test_a_shard_that_started_later_adds_up_as_if_it_ran_alongside_and_does_not_read_as_growth():
    a = _shard(["t.py::a"], {"json": FLAT}, started=T0)
    b = _shard(["t.py::b"], {"json": FLAT}, started=T0 + 3600)  # queued for an hour, or another clock
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    metrics = merged["packages"]["json"]["memory_metrics"]
    assert metrics["memory_trend"] == "stable" and metrics["memory_leak_score"] == 0.0
    assert merged["suggestions"]["suggestions"] == []
    assert merged["run"]["started"] == T0 and merged["run"]["finished"] == T0 + 3610


def test_system_pressure_is_the_worst_the_shards_recorded():
    a = _shard(["t.py::a"], {"json": FLAT}, pressure="low")
    b = _shard(["t.py::b"], {"json": FLAT}, pressure="critical")
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    assert merged["summary"]["system_memory_pressure"] == "critical"
    assert [s["type"] for s in merged["suggestions"]["suggestions"]] == ["system_memory_pressure"]


def test_an_interrupted_shard_makes_the_merged_run_interrupted():
    a = _shard(["t.py::a"], {"json": FLAT})
    b = _shard(["t.py::b"], {"json": FLAT}, interrupted=True, exitstatus=2)
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    assert merged["run"]["interrupted"] is True and merged["run"]["exitstatus"] == 2
    assert [s["interrupted"] for s in merged["run"]["shards"]] == [False, True]


@pytest.mark.parametrize(("statuses", "expected"), [
    ([0, 0], 0), ([0, 1], 1), ([0, 5], 0), ([5, 5], 5), ([1, 2], 2), ([0, None], None), ([1, None], 1),
    ([4, 1], 4), ([3, 2], 3),
])
def test_the_merged_exit_status_is_the_worst_shards(statuses, expected):
    assert merged_exitstatus(statuses) == expected


def _write(tmp_path: Path, name: str, report: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


def test_a_test_in_two_shards_is_an_error_naming_it_and_both_shards(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _shard(["t.py::a", "t.py::twice"], {"json": FLAT}))
    b = _write(tmp_path, "b.json", _shard(["t.py::b", "t.py::twice"], {"json": FLAT}))
    assert main(["merge", a, b, "-o", str(tmp_path / "all.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytest-memtrack: error: the test 't.py::twice' is in both ")
    assert a in err and b in err and "Traceback" not in err
    assert not (tmp_path / "all.json").exists()


def test_a_shard_named_twice_is_an_error(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _shard(["t.py::a"], {"json": FLAT}))
    assert main(["merge", a, a, "-o", str(tmp_path / "all.json")]) == 2
    assert "is twice in" in capsys.readouterr().err


def test_shards_of_different_pythons_are_refused(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _shard(["t.py::a"], {"json": FLAT}))
    b = _write(tmp_path, "b.json", _shard(["t.py::b"], {"json": FLAT}, python="3.12.1"))
    assert main(["merge", a, b, "-o", str(tmp_path / "all.json")]) == 2
    err = capsys.readouterr().err
    assert "Linux-CPython-3.11-x86_64" in err and "Linux-CPython-3.12-x86_64" in err


def test_shards_with_different_leak_thresholds_are_refused():
    a = _shard(["t.py::a"], {"json": FLAT})
    b = copy.deepcopy(_shard(["t.py::b"], {"json": FLAT}))
    b["run"]["config"]["leak_threshold"] = 0.3
    with pytest.raises(Exception, match="leak threshold 0.1 but 'b.json' 0.3"):
        merge_reports([Shard("a.json", a), Shard("b.json", b)])


def test_a_file_that_is_not_a_report_is_named(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _shard(["t.py::a"], {"json": FLAT}))
    bad = tmp_path / "notes.json"
    bad.write_text("{}")
    assert main(["merge", a, str(bad), "-o", str(tmp_path / "all.json")]) == 2
    assert "notes.json" in capsys.readouterr().err


def test_a_merged_run_forecasts_against_its_shards_memory_not_the_merging_machines():
    a = _shard(["t.py::a"], {"app": GROWING})
    b = _shard(["t.py::b"], {"app": FLAT})
    assert "forecast" not in merge_reports([Shard("a.json", a), Shard("b.json", b)])["packages"]["app"], \
        "shards written before forecasts: none, rather than the merging machine's memory"
    for shard, limit, rss in ((a, 8 * 1024**3, 300_000_000.0), (b, 4 * 1024**3, 500_000_000.0)):
        shard["summary"]["process_memory_usage"] = rss
        shard["summary"]["process_forecast"] = {"limit_bytes": limit, "growth_rate": 0.0, "seconds_to_limit": None,
                                                "confidence": None}
    b["summary"]["auto_unload"] = {"enabled": True, "idle_seconds": 60.0, "pressure_levels": ["high", "critical"],
                                   "freed": [], "bytes_freed": 0,
                                   "not_freed": [{"package_name": "plots", "time": T0, "pressure": "high",
                                                  "idle_seconds": 90.0, "reason": "still referenced by a list"}]}
    merged = merge_reports([Shard("a.json", a), Shard("b.json", b)])
    schemas.validate("report", merged)
    forecast = merged["packages"]["app"]["forecast"]
    growth = merged["packages"]["app"]["memory_metrics"]["memory_growth_rate"]
    assert forecast["limit_bytes"] == 4 * 1024**3  # the tightest shard's limit, the fullest shard's RSS
    assert forecast["seconds_to_limit"] == pytest.approx((4 * 1024**3 - 500_000_000.0) / growth)
    assert merged["summary"]["process_memory_usage"] == 500_000_000.0
    assert merged["summary"]["auto_unload"]["not_freed"][0]["package_name"] == "plots"
