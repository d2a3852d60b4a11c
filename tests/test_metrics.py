"""``GET /metrics``: the API's payloads in Prometheus' text format, read back with the official client's parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from samples import package_entry, sample_report
from test_server import request

from pytest_memtrack import LazyLoader, MemoryMonitor
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.server.app import App
from pytest_memtrack.server.metrics import escape_label, format_value, render_metrics
from pytest_memtrack.server.sources import LiveSource, ReportSource
from pytest_memtrack.server.transport import RunningServer, start_server
from pytest_memtrack.tracking.loader import reset_lazy_loader

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a test dependency")

MIB = 1024 * 1024


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in parser.text_string_to_metric_families(text)}


def by_package(family: Any) -> dict[str, float]:
    return {sample.labels["package"]: sample.value for sample in family.samples}


def test_a_saved_report_renders_every_package_figure_and_the_sessions_counters_from_its_payloads():
    report = sample_report()
    response = App(ReportSource(report)).handle("GET", "/metrics")
    assert response.status == 200 and response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    found = families(response.body.decode("utf-8"))
    for name, key in (("memtrack_package_memory_current_bytes", "current_memory_usage"),
                      ("memtrack_package_memory_peak_bytes", "peak_memory_usage"),
                      ("memtrack_package_memory_footprint_bytes", "memory_footprint"),
                      ("memtrack_package_leak_score", "memory_leak_score"),
                      ("memtrack_package_memory_growth_bytes_per_second", "memory_growth_rate")):
        assert found[name].type == "gauge"
        assert by_package(found[name]) == {n: p["memory_metrics"][key] for n, p in report["packages"].items()}
    tests = report["tests"]
    assert found["memtrack_tests_run"].type == "counter"
    assert found["memtrack_tests_run"].samples[0].name == "memtrack_tests_run_total"
    assert found["memtrack_tests_run"].samples[0].value == len(tests)
    assert found["memtrack_tests_hunted"].samples[0].value == sum(t["leak_score"] is not None for t in tests)
    assert found["memtrack_tests_leaking"].samples[0].value == sum(bool(t["leaking"]) for t in tests)
    pressure = {s.labels["level"]: s.value for s in found["memtrack_system_memory_pressure"].samples}
    assert pressure == {level: float(level == report["summary"]["system_memory_pressure"])
                        for level in ("low", "medium", "high", "critical")}
    # A report written before forecasts existed: those families are left out, not written as 0.
    assert "memtrack_package_time_to_memory_limit_seconds" not in found
    assert "memtrack_process_resident_memory_bytes" not in found


def test_only_counters_end_in_total_and_every_family_has_help_and_type_lines():
    text = App(ReportSource(sample_report())).handle("GET", "/metrics").body.decode()
    declared = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert set(declared) == helped
    assert all((kind == "counter") == name.endswith("_total") for name, kind in declared.items())
    assert all(name.startswith("memtrack_") for name in declared)


@pytest.mark.parametrize("name", ['we"ird', "back\\slash", "new\nline", "ünï", "end\\"])
def test_a_hostile_package_name_survives_as_the_same_label_value(name):
    report = sample_report()
    report["packages"] = {name: package_entry(name, 1234.0)}
    found = families(App(ReportSource(report)).handle("GET", "/metrics").body.decode("utf-8"))
    assert by_package(found["memtrack_package_memory_current_bytes"]) == {name: 1234.0}


def test_label_escaping_and_values_follow_the_exposition_format():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert [format_value(v) for v in (3, 2.0, 0.25, float("inf"), float("-inf"), 1e300)] == [
        "3", "2", "0.25", "+Inf", "-Inf", "1e+300"]
    assert render_metrics({}, {}) == "\n"  # nothing known, nothing written


@pytest.fixture
def loader_served() -> Iterator[tuple[LazyLoader, RunningServer]]:
    loader = LazyLoader(MemoryMonitor(available_memory=lambda: 8192.0 * MIB))
    for step in range(12):
        loader.record_readings({"growing.pkg": MIB * (1 + step), "stable.pkg": float(MIB)}, timestamp=1000.0 + step)
    previous = reset_lazy_loader(loader)
    tests = [{"nodeid": "t::a", "leak_score": 0.5, "leaking": True}, {"nodeid": "t::b", "leak_score": None}]
    try:
        with start_server(LiveSource(lambda: tests), "127.0.0.1", 0) as running:
            yield loader, running
    finally:
        reset_lazy_loader(previous)


def test_the_live_server_serves_forecasts_a_growing_package_finite_and_a_stable_one_none(loader_served):
    loader, running = loader_served
    status, headers, body = request(running, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = families(body.decode("utf-8"))
    payload = loader.get_package_memory_info("growing.pkg")["forecast"]
    ttl = by_package(found["memtrack_package_time_to_memory_limit_seconds"])
    assert set(ttl) == {"growing.pkg"} and 0 < ttl["growing.pkg"] < float("inf")
    assert ttl["growing.pkg"] == pytest.approx(payload["seconds_to_limit"], rel=0.05)  # RSS moved in between
    assert by_package(found["memtrack_package_forecast_confidence"]) == {"growing.pkg": payload["confidence"]}
    assert found["memtrack_process_resident_memory_bytes"].samples[0].value > 0
    assert found["memtrack_memory_limit_bytes"].samples[0].value > 8192 * MIB
    assert found["memtrack_tests_run"].samples[0].value == 2
    assert found["memtrack_tests_hunted"].samples[0].value == 1
    assert found["memtrack_tests_leaking"].samples[0].value == 1


def test_metrics_obey_the_servers_access_rules(loader_served):
    _, running = loader_served
    assert request(running, "GET", "/metrics", headers={"Host": "attacker.example"})[0] == 403
    assert request(running, "GET", "/metrics", headers={"Host": f"127.0.0.1:{running.port}"})[0] == 200
    assert request(running, "POST", "/metrics")[0] == 405
    with start_server(ReportSource(sample_report()), "127.0.0.1", 0, token="s3cret") as guarded:
        status, _, body = request(guarded, "GET", "/metrics")
        assert status == 401 and json.loads(body)["status"] == "error"
        assert request(guarded, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"})[0] == 200


INNER = '''
import os, pathlib, urllib.request


def test_first():
    import mtapp  # noqa: F401  (the project's own package: tracked)


def test_scrapes_its_own_session():
    with urllib.request.urlopen(os.environ["MEMTRACK_SERVER_URL"] + "metrics", timeout=10) as response:
        pathlib.Path(__file__).with_name("scrape.txt").write_bytes(response.read())
'''


def test_a_live_session_counts_its_tests_and_its_saved_report_serves_the_same_families(pytester):
    pytester.makepyfile(test_inner=INNER, **{"mtapp/__init__.py": "DATA = list(range(1000))\n"})
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess("--memtrack", "--memtrack-serve=0", "--memtrack-json=report.json",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    live = families((pytester.path / "scrape.txt").read_text("utf-8"))
    assert live["memtrack_tests_run"].samples[0].value == 2  # a test counts from its setup report: this one too
    assert "memtrack_process_resident_memory_bytes" in live
    saved = families(App(ReportSource(load_report(str(pytester.path / "report.json")))).handle(
        "GET", "/metrics").body.decode("utf-8"))
    assert saved["memtrack_tests_run"].samples[0].value == 2
    assert {"memtrack_package_memory_current_bytes", "memtrack_memory_limit_bytes",
            "memtrack_process_resident_memory_bytes", "memtrack_process_memory_growth_bytes_per_second"} <= set(saved)


@pytest.mark.slow
def test_the_live_dashboard_shows_the_times_to_the_limit_without_errors(loader_served, browser):
    _, running = loader_served
    page = browser.new_page()
    try:
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(running.url)
        growing = page.text_content("tr:has-text('growing.pkg') td[data-label='time to limit']") or ""
        stable = page.text_content("tr:has-text('stable.pkg') td[data-label='time to limit']") or ""
        assert growing.split()[-1] in ("s", "min", "h", "d"), growing
        assert stable.strip() == "—"  # not growing: no forecast
        assert "process: time to memory limit" in (page.text_content("#live") or "")
        assert problems == []
    finally:
        page.close()
