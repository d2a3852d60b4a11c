"""Opt-in automatic unloading: idle lazy packages are unloaded under (simulated) high memory pressure, and the
summary records what was freed and what could not be."""

from __future__ import annotations

import gc
import sys
import time
import weakref

import pytest

from pytest_memtrack import LazyLoader, MemoryMonitor
from pytest_memtrack.schemas import validate
from pytest_memtrack.tracking.unloading import Candidate, idle_packages


class Pressure:
    """The system's share of memory in use, as the monitor reads it: set by the test."""

    def __init__(self, used: float) -> None:
        self.used = used

    def __call__(self) -> float:
        return self.used


def idle(loader: LazyLoader, name: str, seconds: float) -> None:
    """The package was last used ``seconds`` ago (what ``load`` records on every use)."""
    info = loader.get_package_info(name)
    assert info is not None
    info.last_used = time.time() - seconds


def test_an_idle_lazy_package_is_freed_when_pressure_reaches_high_and_the_summary_says_so(make_package):
    name = make_package("mt_auto_idle", "BIG = bytes(5_000_000)\n")
    pressure = Pressure(0.5)  # low
    loader = LazyLoader(MemoryMonitor(system_usage=pressure), auto_unload=True, unload_idle_seconds=60)
    alive = weakref.ref(loader.load(name))
    idle(loader, name, 120)
    loader.update_all_memory_metrics()
    assert loader.is_loaded(name), "low pressure: nothing is unloaded"
    pressure.used = 0.9  # high (0.85 and above)
    loader.update_all_memory_metrics()
    gc.collect()
    assert alive() is None and name not in sys.modules
    assert loader.get_package_info(name).status == "unloaded"
    summary = loader.get_memory_usage_summary()
    validate("summary", summary)
    record = summary["auto_unload"]
    assert record["enabled"] is True and record["not_freed"] == []
    [freed] = record["freed"]
    assert freed["package_name"] == name and freed["pressure"] == "high" and freed["idle_seconds"] >= 120
    assert freed["module_state_bytes"] >= 5_000_000 and record["bytes_freed"] == freed["module_state_bytes"]
    # It loads again on next use.
    assert len(loader.lazy(name).BIG) == 5_000_000 and loader.is_loaded(name)


def test_a_package_still_referenced_is_kept_loaded_and_recorded_as_not_freed(make_package):
    name = make_package("mt_auto_held", "X = 1\n")
    loader = LazyLoader(MemoryMonitor(system_usage=Pressure(0.97)), auto_unload=True, unload_idle_seconds=60)
    held = loader.load(name)
    idle(loader, name, 120)
    loader.auto_unload_idle()
    assert sys.modules[name] is held and loader.is_loaded(name), "kept: unloading it would free nothing"
    [entry] = loader.get_memory_usage_summary()["auto_unload"]["not_freed"]
    assert entry["package_name"] == name and entry["pressure"] == "critical"
    assert "still referenced by" in entry["reason"] and "test_auto_unload" in entry["reason"]
    validate("summary", loader.get_memory_usage_summary())


def test_recently_used_and_ordinarily_imported_packages_stay_and_auto_unload_is_off_by_default(make_package):
    recent = make_package("mt_auto_recent", "X = 1\n")
    observed = make_package("mt_auto_observed", "X = 1\n")
    loader = LazyLoader(MemoryMonitor(system_usage=Pressure(0.99)), auto_unload=True, unload_idle_seconds=60)
    loader.load(recent)
    loader.observe_imports()
    try:
        __import__(observed)
    finally:
        loader.stop_observing()
    idle(loader, observed, 3600)
    assert loader.auto_unload_idle() == []
    assert loader.is_loaded(recent) and loader.is_loaded(observed)
    off = LazyLoader(MemoryMonitor(system_usage=Pressure(0.99)))
    off.load(recent)
    idle(off, recent, 3600)
    assert off.auto_unload_idle() == [] and off.is_loaded(recent)
    assert off.get_memory_usage_summary()["auto_unload"]["enabled"] is False


def test_the_idle_rule_acts_only_at_high_or_critical_pressure_on_lazy_loaded_idle_packages():
    packages = [Candidate("a", "loaded", True, 0.0), Candidate("b", "loaded", True, 95.0),
                Candidate("c", "loaded", False, 0.0), Candidate("d", "unloaded", True, 0.0),
                Candidate("e", "loaded", True, None)]
    assert idle_packages(packages, "high", 100.0, 10.0) == ["a"]
    assert idle_packages(packages, "critical", 100.0, 0.0) == ["a", "b"]
    assert idle_packages(packages, "medium", 100.0, 0.0) == []


@pytest.mark.parametrize("value", ["soon", "-1", "1e999"])
def test_a_bad_unload_idle_time_is_a_usage_error_naming_the_option(pytester, value):
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_inprocess("--memtrack", "--memtrack-auto-unload", f"--memtrack-unload-idle={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--memtrack-unload-idle must be a non-negative number*"])


def test_the_auto_unload_options_reach_the_report(pytester):
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_inprocess("--memtrack", "--memtrack-auto-unload", "--memtrack-unload-idle=30",
                                          "--memtrack-json=report.json", "-p", "no:cacheprovider")
    assert result.ret == 0
    import json

    record = json.loads((pytester.path / "report.json").read_text())["summary"]["auto_unload"]
    assert record["enabled"] is True and record["idle_seconds"] == 30.0


def test_a_package_whose_function_is_imported_elsewhere_is_not_called_freed(make_package):
    # `from pkg import handle` elsewhere keeps handle.__globals__ -- the whole module state -- after the module
    # object itself is collected: the weak reference to the module alone would call that freed.
    name = make_package("mt_auto_globals", "BIG = bytes(3_000_000)\ndef handle():\n    return len(BIG)\n")
    make_package("mt_auto_user", f"from {name} import handle\n")
    loader = LazyLoader(MemoryMonitor(system_usage=Pressure(0.9)), auto_unload=True, unload_idle_seconds=60)
    loader.load(name)
    __import__("mt_auto_user")
    idle(loader, name, 120)
    [result] = loader.auto_unload_idle()
    assert result["still_referenced"] is True and result["module_state_released"] == 0.0
    [entry] = loader.get_memory_usage_summary()["auto_unload"]["not_freed"]
    assert f"function {name}.handle (in the globals of module 'mt_auto_user')" in entry["reason"]
    assert "__memtrack_unload_sentinel__" not in sys.modules["mt_auto_user"].handle.__globals__
    assert sys.modules["mt_auto_user"].handle() == 3_000_000


def test_a_manual_unload_of_a_plain_package_frees_its_globals_too(make_package):
    name = make_package("mt_auto_manual", "BIG = bytes(1_000_000)\ndef f():\n    return BIG\nclass K:\n    pass\n")
    loader = LazyLoader()
    loader.load(name)
    result = loader.unload(name)
    assert result["still_referenced"] is False and result["module_state_released"] >= 1_000_000


def test_the_terminal_summary_says_what_auto_unload_freed_and_could_not(sample_report):
    from pytest_memtrack.report.terminal import summary_lines

    sample_report["summary"]["auto_unload"] = {
        "enabled": True, "idle_seconds": 300.0, "pressure_levels": ["high", "critical"], "bytes_freed": 5_242_880,
        "freed": [{"package_name": "bigmodel", "time": 1.0, "pressure": "high", "idle_seconds": 400.0,
                   "modules_removed": 3, "module_state_bytes": 5_242_880, "rss_freed": 0.0}],
        "not_freed": [{"package_name": "plots", "time": 1.0, "pressure": "high", "idle_seconds": 400.0,
                       "reason": "still referenced by the globals of module 'app.views'"}]}
    validate("summary", sample_report["summary"])
    lines = summary_lines(sample_report, verbose=0)
    assert "auto-unload: freed bigmodel (5.0 MiB module state) at high pressure" in lines
    assert "auto-unload: could not free plots: still referenced by the globals of module 'app.views'" in lines


def test_a_session_with_auto_unload_frees_an_idle_lazy_package_under_simulated_pressure(pytester):
    pytester.makepyfile(**{"mt_session_big/__init__.py": "BIG = bytes(4_000_000)\n"})
    pytester.makeconftest("""
        from pytest_memtrack import get_lazy_loader

        def pytest_configure(config):
            get_lazy_loader().monitor.system_usage = lambda: 0.9  # simulated: 90% of memory in use, "high"
    """)
    pytester.makepyfile(test_inner="""
        import sys
        from pytest_memtrack import get_lazy_loader

        def test_loads_it_lazily():
            assert len(get_lazy_loader().lazy("mt_session_big").BIG) == 4_000_000

        def test_it_was_unloaded_after_the_first_test():
            assert "mt_session_big" not in sys.modules
    """)
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess("--memtrack", "--memtrack-auto-unload", "--memtrack-unload-idle=0",
                                          "--memtrack-check-interval=0", "--memtrack-json=report.json",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["auto-unload: freed mt_session_big (3.8 MiB module state) at high pressure"])
    import json

    report = json.loads((pytester.path / "report.json").read_text())
    validate("report", report)
    [freed] = report["summary"]["auto_unload"]["freed"]
    assert freed["package_name"] == "mt_session_big" and freed["module_state_bytes"] >= 4_000_000
    assert report["packages"]["mt_session_big"]["status"] == "unloaded"
