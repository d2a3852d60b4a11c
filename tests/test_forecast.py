"""Forecasts of when memory runs out: the pure maths, the payloads that carry them, the suggestion and the option."""

from __future__ import annotations

import random

import pytest

from pytest_memtrack import LazyLoader, MemoryMonitor
from pytest_memtrack.schemas import validate
from pytest_memtrack.tracking.forecast import FULL_CONFIDENCE_POINTS, fit_confidence, forecast, memory_limit

MIB = 1024 * 1024


def growing(n: int = 20, step: float = MIB, start: float = 10 * MIB, noise: float = 0.0) -> list[tuple[float, float]]:
    rng = random.Random(7)
    return [(1000.0 + i, start + step * i + rng.uniform(-noise, noise)) for i in range(n)]


def test_a_growing_history_reaches_the_limit_in_headroom_over_growth_rate_with_high_confidence():
    result = forecast(growing(), limit_bytes=200 * MIB, process_rss=100 * MIB)
    assert result.growth_rate == pytest.approx(MIB)
    assert result.seconds_to_limit == pytest.approx(100.0)  # 100 MiB of headroom at 1 MiB/s
    assert result.confidence == pytest.approx(1.0)
    assert result.to_payload() == {"limit_bytes": 200 * MIB, "growth_rate": result.growth_rate,
                                   "seconds_to_limit": result.seconds_to_limit, "confidence": 1.0}


@pytest.mark.parametrize("history", [
    [(1000.0 + i, 10 * MIB) for i in range(20)],  # flat
    [(1000.0 + i, 10 * MIB + (MIB if i % 2 else 0)) for i in range(20)],  # a sawtooth
    [(1000.0 + i, 30 * MIB - MIB * i) for i in range(20)],  # shrinking
    [(1000.0, 1.0), (1001.0, 2.0)],  # too short for a trend
    [],
])
def test_a_history_that_is_not_increasing_has_no_time_to_the_limit_and_no_confidence(history):
    result = forecast(history, limit_bytes=200 * MIB, process_rss=100 * MIB)
    assert result.seconds_to_limit is None and result.confidence is None
    assert result.limit_bytes == 200 * MIB


def test_the_limit_already_reached_is_zero_seconds_away():
    assert forecast(growing(), limit_bytes=50 * MIB, process_rss=60 * MIB).seconds_to_limit == 0.0


def test_confidence_is_the_fits_r_squared_discounted_for_few_readings():
    clean, noisy = fit_confidence(growing()), fit_confidence(growing(noise=8 * MIB))
    assert clean == pytest.approx(1.0) and 0.0 < noisy < clean
    few = growing(n=5)
    assert fit_confidence(few) == pytest.approx(5 / FULL_CONFIDENCE_POINTS)  # a perfect line through 5 points
    assert fit_confidence(growing(n=2)) == 0.0


def test_the_limit_is_the_budget_or_the_process_rss_plus_available_memory():
    assert memory_limit(512 * MIB, 100 * MIB, 4096 * MIB) == 512 * MIB
    assert memory_limit(None, 100 * MIB, 900 * MIB) == 1000 * MIB


def record(loader: LazyLoader, readings: dict[str, list[float]]) -> None:
    steps = len(next(iter(readings.values())))
    for step in range(steps):
        loader.record_readings({name: values[step] for name, values in readings.items()}, timestamp=1_000.0 + step)


def test_a_growing_package_gets_a_finite_forecast_and_a_stable_one_none_in_every_payload():
    monitor = MemoryMonitor(available_memory=lambda: 4096.0 * MIB)
    loader = LazyLoader(monitor, memory_budget=None)
    record(loader, {"growing.pkg": [MIB * (1 + i) for i in range(12)], "stable.pkg": [MIB] * 12})
    grows = loader.get_package_memory_info("growing.pkg")
    stays = loader.get_package_memory_info("stable.pkg")
    validate("package_info", grows)
    validate("package_info", stays)
    assert grows["forecast"]["seconds_to_limit"] > 0 and 0.9 < grows["forecast"]["confidence"] <= 1.0
    assert grows["forecast"]["growth_rate"] == grows["memory_metrics"]["memory_growth_rate"]
    assert stays["forecast"]["seconds_to_limit"] is None and stays["forecast"]["confidence"] is None
    # The default limit: the process's RSS now plus what the system has available (4 GiB here).
    rss = monitor.get_current_memory_usage()
    assert abs(grows["forecast"]["limit_bytes"] - (rss + 4096 * MIB)) < 64 * MIB
    summary = loader.get_memory_usage_summary()
    validate("summary", summary)
    leak = next(p for p in summary["packages_with_leaks"] if p["package_name"] == "growing.pkg")
    assert leak["forecast"] == grows["forecast"] | {"limit_bytes": leak["forecast"]["limit_bytes"]}
    assert set(summary["process_forecast"]) == {"limit_bytes", "growth_rate", "seconds_to_limit", "confidence"}
    assert summary["process_memory_usage"] > 0


def test_a_budget_close_to_the_growth_raises_a_forecast_suggestion():
    loader = LazyLoader(memory_budget=1)  # already past: the growing package has 0 s left
    record(loader, {"growing.pkg": [MIB * (1 + i) for i in range(12)], "stable.pkg": [MIB] * 12})
    report = loader.get_optimization_suggestions_report()
    validate("suggestions", report)
    near = [s for s in report["suggestions"] if s["type"] == "memory_limit_forecast"]
    assert [s["package_name"] for s in near if s["package_name"]] == ["growing.pkg"]
    assert near[0]["severity"] == "high" and "memory limit" in near[0]["message"]
    # With a budget far away, no package is near its limit.
    roomy = LazyLoader(memory_budget=1024**4)
    record(roomy, {"growing.pkg": [MIB * (1 + i) for i in range(12)]})
    assert not [s for s in roomy.get_memory_optimization_suggestions()
                if s["type"] == "memory_limit_forecast" and s["package_name"]]


@pytest.mark.parametrize("value", ["lots", "0", "-5MB", "2 parsecs"])
def test_a_bad_memory_budget_is_a_usage_error_naming_the_option(pytester, value):
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_inprocess("--memtrack", f"--memtrack-memory-budget={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--memtrack-memory-budget must be a size*"])


def test_the_memory_budget_from_the_ini_file_is_the_limit_in_the_report(pytester):
    pytester.makeini("[pytest]\nmemtrack_memory_budget = 3GB\n")
    pytester.makepyfile("import json\n\ndef test_ok():\n    assert json.dumps(1)\n")
    result = pytester.runpytest_inprocess("--memtrack", "--memtrack-json=report.json", "-p", "no:cacheprovider")
    assert result.ret == 0
    import json

    report = json.loads((pytester.path / "report.json").read_text())
    validate("report", report)
    assert report["summary"]["process_forecast"]["limit_bytes"] == 3 * 1024**3
    assert all(p["forecast"]["limit_bytes"] == 3 * 1024**3 for p in report["packages"].values())


def test_the_dashboard_shows_the_time_to_the_limit_of_the_process_and_of_each_leaking_package():
    from pytest_memtrack.server.dashboard import render_dashboard
    from pytest_memtrack.server.progress import SavedSession
    from pytest_memtrack.units import MISSING, format_duration

    loader = LazyLoader(memory_budget=1024**4)
    record(loader, {"growing.pkg": [MIB * (1 + i) for i in range(12)]})
    summary = loader.get_memory_usage_summary()
    model = {"summary": summary, "packages": loader.get_package_memory_infos(),
             "leaks": loader.get_memory_leaks_report(0.1), "tests": []}
    html = render_dashboard(SavedSession(model), "saved report", "n0nce")
    assert "time to limit" in html and "process: time to memory limit" in html
    seconds = model["packages"]["growing.pkg"]["forecast"]["seconds_to_limit"]
    assert format_duration(seconds) in html
    old_summary = {k: v for k, v in summary.items() if k not in ("process_forecast", "process_memory_usage")}
    old_packages = {name: {k: v for k, v in p.items() if k != "forecast"} for name, p in model["packages"].items()}
    old = render_dashboard(SavedSession({**model, "summary": old_summary, "packages": old_packages}),
                           "saved report", "n0nce")  # a report from before forecasts
    assert format_duration(seconds) not in old and MISSING in old
