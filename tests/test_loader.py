"""The core: lazy loading with real per-package memory tracking, and the spec's payloads."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from pytest_memtrack import LazyLoader, MemoryMetrics, MemoryMonitor, PackageInfo, get_lazy_loader
from pytest_memtrack.schemas import validate


def test_the_public_api_imports_from_the_package():
    assert get_lazy_loader() is get_lazy_loader()
    assert {LazyLoader, MemoryMetrics, MemoryMonitor, PackageInfo}


def test_a_lazily_loaded_package_has_status_load_time_footprint_and_history(make_package):
    name = make_package("mt_lazy_pkg", "TABLE = [bytes(1000) for _ in range(200)]\ndef size():\n    return len(TABLE)\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    assert loader.get_package_info(name).status == "registered"
    assert name not in sys.modules
    assert module.size() == 200
    info = loader.get_package_info(name)
    assert info.status == "loaded" and info.is_loaded
    assert info.load_time is not None and info.load_time > 0
    assert info.memory_metrics.memory_footprint > 200_000
    assert info.memory_metrics.current_memory_usage > 200_000
    assert len(info.memory_metrics.memory_history) >= 2


def test_a_package_keeping_50kb_per_call_is_flagged_within_ten_checks(make_package):
    name = make_package("mt_leaky_pkg", "KEPT = []\ndef handle():\n    KEPT.append(bytes(50 * 1024))\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    for _ in range(10):
        module.handle()
        loader.update_all_memory_metrics()
    metrics = loader.get_package_info(name).memory_metrics
    assert metrics.memory_trend == "increasing"
    assert metrics.memory_leak_score > 0.3
    assert [leak["package_name"] for leak in loader.detect_memory_leaks(threshold=0.3)] == [name]


def test_a_package_filling_a_cache_once_stays_below_005(make_package):
    name = make_package("mt_cache_pkg", "CACHE = {}\ndef handle():\n    CACHE.setdefault('t', [bytes(1000) for _ in range(500)])\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    for _ in range(10):
        module.handle()
        loader.update_all_memory_metrics()
    assert loader.get_package_info(name).memory_metrics.memory_leak_score < 0.05


def test_unload_releases_the_module_state_and_says_what_it_cannot_free(make_package):
    name = make_package("mt_unload_pkg", "BIG = bytes(5_000_000)\n")
    loader = LazyLoader()
    loader.load(name)
    result = loader.unload(name)
    assert name not in sys.modules
    assert loader.get_package_info(name).status == "unloaded"
    assert result["modules_removed"] == 1
    assert result["module_state_released"] >= 5_000_000
    assert result["still_referenced"] is False
    assert "not returned" in result["note"]


def test_unload_reports_a_package_still_referenced_elsewhere(make_package):
    name = make_package("mt_held_pkg", "X = 1\n")
    loader = LazyLoader()
    held = loader.load(name)
    result = loader.unload(name)
    assert result["still_referenced"] is True and held.X == 1


def test_a_failed_load_is_recorded_with_its_error_and_memory(make_package):
    name = make_package("mt_broken_pkg", "raise RuntimeError('boom at import')\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    with pytest.raises(ImportError, match="boom at import"):
        module.anything  # noqa: B018
    info = loader.get_package_info(name)
    assert info.status == "failed"
    assert "RuntimeError: boom at import" in info.error
    assert info.memory_metrics.memory_check_count == 2  # before and after, also on failure
    with pytest.raises(ImportError, match="failed to load earlier"):
        loader.load(name)


def test_ordinary_imports_are_observed_with_their_footprint(make_package):
    name = make_package("mt_observed_pkg", "DATA = [bytes(2000) for _ in range(100)]\n")
    loader = LazyLoader()
    loader.observe_imports()
    try:
        __import__(name)
    finally:
        loader.stop_observing()
    info = loader.get_package_info(name)
    assert info is not None and info.observed and info.status == "loaded"
    assert info.memory_metrics.memory_footprint > 0


def test_a_packages_own_submodules_are_measured_with_its_import_and_another_package_on_its_own(make_package, tmp_path):
    """One measurement (two malloc readings) per package crossing, not per module: the submodules a package's
    import imports count to its footprint inside that import's measurement; another package imported in the middle
    is measured on its own and subtracted."""
    from pytest_memtrack.tracking.imports import FootprintMeter

    other = make_package("mt_other_pkg", "OTHER = [bytes(3000) for _ in range(200)]\n")
    name = make_package("mt_parent_pkg", "from . import part_a, part_b\nimport mt_other_pkg\n")
    for part in ("part_a", "part_b"):
        (tmp_path / name / f"{part}.py").write_text("DATA = [bytes(2000) for _ in range(300)]\n")
    measured: list[str] = []
    ends: list[object] = []
    begin, end = FootprintMeter.begin, FootprintMeter.end

    def counting(self: FootprintMeter, package: str = "") -> tuple[float, str, float, float, float]:
        measured.append(package)
        return begin(self, package)

    def ending(self: FootprintMeter, *args: Any, **kwargs: Any) -> Any:
        ends.append(end(self, *args, **kwargs))
        return ends[-1]

    loader = LazyLoader()
    loader.observe_imports()
    # Earlier tests' garbage, if collected during the import, reads as that import shrinking memory: collected
    # first. (Once, in a serial run of the whole suite, the nested package's 600 KB read 397 KB.)
    gc.collect()
    FootprintMeter.begin, FootprintMeter.end = counting, ending  # type: ignore[method-assign]
    try:
        __import__(name)
    finally:
        FootprintMeter.begin, FootprintMeter.end = begin, end  # type: ignore[method-assign]
        loader.stop_observing()
    assert measured == [name, other]
    parent, nested = loader.get_package_info(name), loader.get_package_info(other)
    assert parent is not None and nested is not None
    # both parts' 1.2 MB, without the nested package's 600 KB (both well above what the reading's noise moves)
    assert 1_000_000 < parent.memory_metrics.memory_footprint < 1_500_000, ends
    assert 500_000 < nested.memory_metrics.memory_footprint < 900_000, ends


def test_every_payload_validates_against_its_schema(make_package):
    name = make_package("mt_payload_pkg", "KEPT = []\ndef handle():\n    KEPT.append(bytes(100_000))\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    for _ in range(8):
        module.handle()
        loader.update_all_memory_metrics()
    validate("summary", loader.get_memory_usage_summary())
    validate("package_info", loader.get_package_memory_info(name))
    validate("leaks", loader.get_memory_leaks_report(0.1))
    validate("suggestions", loader.get_optimization_suggestions_report())
    validate("garbage_collection", loader.force_garbage_collection())
    validate("update_metrics", loader.update_all_memory_metrics())
    assert loader.get_package_memory_info("no-such-package") is None
    assert any(s["type"] == "memory_leak" for s in loader.get_memory_optimization_suggestions())


def test_history_is_bounded_by_the_configured_size(make_package):
    name = make_package("mt_bounded_pkg", "X = 1\n")
    loader = LazyLoader(history_size=5)
    loader.load(name)
    for _ in range(12):
        loader.update_all_memory_metrics()
    payload = loader.get_package_memory_info(name)["memory_metrics"]
    assert payload["memory_history_length"] == 5 and payload["memory_check_count"] >= 13


@pytest.mark.parametrize(("used", "level"), [(0.2, "low"), (0.69, "low"), (0.7, "medium"), (0.86, "high"),
                                             (0.97, "critical")])
def test_pressure_levels_follow_the_spec_thresholds(used, level):
    from pytest_memtrack.tracking.monitor import pressure_level

    assert pressure_level(used) == level


def test_the_monitor_reads_real_process_memory():
    monitor = MemoryMonitor()
    assert monitor.get_current_memory_usage() > 1_000_000
    assert monitor.get_memory_pressure_level() in ("low", "medium", "high", "critical")
    assert monitor.get_memory_footprint("json") > 0
    assert monitor.detect_memory_leak([(float(i), 1000.0) for i in range(10)]) == (False, 0.0)


def wait_for(condition, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_background_monitoring_builds_history_and_finds_a_leak(make_package):
    name = make_package("mt_bg_leaky_pkg", "KEPT = []\ndef handle():\n    KEPT.append(bytes(50 * 1024))\n")
    loader = LazyLoader()
    module = loader.lazy(name)
    module.handle()
    status = loader.start_monitoring(interval=0.02)
    assert status.running and status.interval == 0.02
    try:
        checks_seen = 0
        for _ in range(8):  # one call per check: the package keeps 50 KB more at every reading
            assert wait_for(lambda seen=checks_seen: loader.monitoring_status().checks > seen)
            checks_seen = loader.monitoring_status().checks
            module.handle()
    finally:
        final = loader.stop_monitoring()
    assert final is not None and not final.running and final.last_error is None
    assert loader.monitoring_status() is None and loader.stop_monitoring() is None
    metrics = loader.get_package_info(name).memory_metrics
    assert metrics.memory_check_count >= 8
    assert metrics.memory_trend == "increasing"
    assert metrics.memory_leak_score > 0.3


def test_background_monitoring_survives_a_failing_check_and_restarts_with_a_new_interval():
    from pytest_memtrack.tracking.background import PeriodicCheck

    def failing():
        raise RuntimeError("reading failed")

    check = PeriodicCheck(failing, 0.01)
    check.start()
    assert wait_for(lambda: check.status().checks >= 3)  # it goes on after a failure
    check.stop()
    assert check.status().last_error == "RuntimeError: reading failed"
    assert not check.status().running

    loader = LazyLoader()
    first = loader.start_monitoring(interval=60)
    second = loader.start_monitoring(interval=0.01)
    assert (first.interval, second.interval) == (60.0, 0.01)
    assert wait_for(lambda: loader.monitoring_status().checks >= 1)
    loader.stop_monitoring()


@pytest.mark.parametrize("interval", [0, -1, "30", None])
def test_background_monitoring_rejects_a_bad_interval(interval):
    with pytest.raises(ValueError, match="positive number of seconds"):
        LazyLoader().start_monitoring(interval=interval)


def test_the_monitors_system_readings_are_psutils_figures():
    """On Linux the monitor reads ``/proc/meminfo`` itself (importing psutil is ~10 ms of a session's start-up);
    the figures are the ones psutil computes from the same file."""
    import psutil

    from pytest_memtrack.tracking import monitor

    if monitor._meminfo() is None:
        pytest.skip("no /proc/meminfo here: psutil is read directly")
    # (read back to back: the machine's memory moves meanwhile, by far less than these tolerances)
    assert abs(monitor._system_usage() - psutil.virtual_memory().percent / 100) <= 0.01
    assert abs(monitor._available_memory() - psutil.virtual_memory().available) <= 64 * 1024 * 1024


def test_a_session_imports_psutil_only_when_a_hunt_needs_it():
    import subprocess
    import sys

    code = ("import sys, pytest_memtrack.session, pytest_memtrack.tracking.loader as l; "
            "loader = l.LazyLoader(); loader.update_all_memory_metrics(); loader.get_memory_usage_summary(); "
            "print('psutil' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("True" if not sys.platform.startswith("linux") else "False")
