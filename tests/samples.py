"""Hand-made report models following docs/report-format.md, for renderer/server/history tests.

End-to-end tests produce real reports with ``pytester``; these samples let unit tests cover edge cases
(empty runs, hostile names, many packages) without running a session.
"""

from __future__ import annotations

import copy
from typing import Any

T0 = 1764100000.0


def package_entry(name: str, current: float, *, score: float = 0.0, trend: str = "stable", status: str = "loaded",
                  growth: float = 0.0, checks: int = 10) -> dict[str, Any]:
    return {
        "package_name": name,
        "memory_metrics": {
            "current_memory_usage": current,
            "peak_memory_usage": current * 1.2,
            "memory_footprint": current * 0.8,
            "memory_leak_score": score,
            "memory_trend": trend,
            "memory_pressure_level": "low",
            "memory_growth_rate": growth,
            "average_memory_usage": current * 0.9,
            "memory_variance": 1024.0,
            "memory_check_count": checks,
            "last_memory_check": T0 + checks,
            "memory_history_length": checks,
        },
        "is_loaded": status == "loaded",
        "status": status,
        "leak_tests": [],
    }


def leaking_test(nodeid: str = "tests/test_app.py::test_leaks_a_cache_entry_per_request") -> dict[str, Any]:
    return {
        "nodeid": nodeid, "outcome": "failed", "duration": 0.08, "worker": None,
        "rss_before": 50_000_000, "rss_after": 50_400_000, "rss_delta": 400_000,
        "leak_score": 0.83, "limit": 0.1, "leaking": True,
        "hunt": {
            "runs": 6, "warmup_runs": 2,
            "readings": [{"traced": 1000 + 51200 * i, "blocks": 10 + i, "rss": 50_000_000 + 65536 * i,
                          "fds": 12, "threads": 1, "objects": 50000 + i} for i in range(4)],
            "kinds": {
                "memory": {"leaking": True, "score": 0.83, "per_run": 51200.0},
                "native": {"leaking": False, "score": 0.0, "per_run": 14336.0},
                "fds": {"leaking": False, "score": 0.0, "per_run": 0.0},
                "threads": {"leaking": False, "score": 0.0, "per_run": 0.0},
            },
            "evidence": {
                "allocation_sites": [{"file": "app/cache.py", "line": 12, "bytes_per_run": 51200.0, "count_per_run": 1.0}],
                "packages": [{"package": "app", "bytes_per_run": 51200.0}],
                "object_types": [{"type": "bytes", "count_per_run": 1.0}],
                "new_threads": [], "new_fds": [],
                "holders": [{"holder": "app.cache._RESPONSES", "type": "dict", "objects": 4},
                            {"holder": "sys.path_importer_cache", "type": "dict", "objects": 4,
                             "note": "import system cache"}],
            },
            "error": None,
        },
        "message": "leak score 0.83 exceeds max_leak_score(0.1): 50.0 KiB per run (memory)",
    }


def passing_test(nodeid: str, score: float | None = None) -> dict[str, Any]:
    return {
        "nodeid": nodeid, "outcome": "passed", "duration": 0.01, "worker": None,
        "rss_before": 50_000_000, "rss_after": 50_000_000, "rss_delta": 0,
        "leak_score": score, "limit": None if score is None else 0.1, "leaking": False,
        "hunt": None, "message": None,
    }


def sample_report() -> dict[str, Any]:
    packages = {
        "app": package_entry("app", 2_000_000, score=0.62, trend="increasing", growth=51200.0),
        "json": package_entry("json", 120_000),
        "email": package_entry("email", 900_000, status="unloaded"),
    }
    leak = packages["app"]["memory_metrics"]
    return {
        "format_version": 1,
        "tool": {"name": "pytest-memtrack", "version": "0.1.0"},
        "run": {"started": T0, "finished": T0 + 12.5, "duration": 12.5, "python": "3.11.7",
                "implementation": "CPython", "platform": "Linux-x86_64", "machine": "x86_64",
                "hostname": "ci", "pid": 1, "argv": ["pytest", "--memtrack"], "rootdir": "/p",
                "workers": 0, "interrupted": False, "exitstatus": 1, "config": {"max_leak_score": None}},
        "summary": {
            "total_current_memory": 3_020_000, "total_peak_memory": 3_624_000, "total_memory_footprint": 2_416_000,
            "packages_with_leaks": [{"package_name": "app", "leak_score": 0.62, "trend": "increasing",
                                     "growth_rate": 51200.0}],
            "memory_trends": {"increasing": 1, "decreasing": 0, "stable": 2},
            "memory_pressure_levels": {"low": 3, "medium": 0, "high": 0, "critical": 0},
            "system_memory_pressure": "low", "total_packages": 3, "loaded_packages": 2,
        },
        "leaks": {
            "leaks": [{"package_name": "app", "leak_score": 0.62, "memory_trend": "increasing",
                       "memory_growth_rate": 51200.0, "current_memory_usage": leak["current_memory_usage"],
                       "peak_memory_usage": leak["peak_memory_usage"], "memory_footprint": leak["memory_footprint"],
                       "memory_check_count": 10, "last_memory_check": T0 + 10, "tests": []}],
            "total_leaks": 1, "threshold": 0.1, "detection_time": T0 + 12,
        },
        "suggestions": {
            "suggestions": [{"type": "memory_leak", "package_name": "app", "severity": "high",
                             "message": "Package 'app' shows signs of memory leak (score: 0.62)",
                             "recommendation": "Investigate memory usage patterns and consider reloading",
                             "value": 0.62}],
            "total_suggestions": 1, "high_severity": 1, "medium_severity": 0, "low_severity": 0,
            "generation_time": T0 + 12,
        },
        "packages": packages,
        "package_histories": {
            "app": [[T0 + i, 1_500_000 + 51200 * i] for i in range(10)],
            "json": [[T0 + i, 120_000] for i in range(10)],
            "email": [],
        },
        "tests": [leaking_test(), passing_test("tests/test_app.py::test_warm_cache", 0.0),
                  passing_test("tests/test_app.py::test_plain")],
        "comparison": None,
    }


def empty_report() -> dict[str, Any]:
    report = copy.deepcopy(sample_report())
    report["summary"].update(total_current_memory=0, total_peak_memory=0, total_memory_footprint=0,
                             packages_with_leaks=[], memory_trends={"increasing": 0, "decreasing": 0, "stable": 0},
                             memory_pressure_levels={"low": 0, "medium": 0, "high": 0, "critical": 0},
                             total_packages=0, loaded_packages=0)
    report["leaks"].update(leaks=[], total_leaks=0)
    report["suggestions"].update(suggestions=[], total_suggestions=0, high_severity=0)
    report["packages"] = {}
    report["package_histories"] = {}
    report["tests"] = []
    report["run"]["exitstatus"] = 5
    return report


def large_report(count: int = 10_000, leaking: int = 30, packages: int = 40) -> dict[str, Any]:
    """A report of ``count`` tests (every 50th hunted, ``leaking`` of them leaking through three culprits, a mix of
    outcomes) and ``packages`` packages with 60 readings each: a large suite's report, made in milliseconds."""
    report = sample_report()
    outcomes = ("passed",) * 17 + ("failed", "skipped", "xfailed")
    tests = []
    for i in range(count):
        nodeid = f"tests/unit/test_module_{i // 100:03d}.py::TestCase::test_behaviour_number_{i}[param-{i % 7}]"
        if i < leaking:
            test = leaking_test(nodeid)
            test["leak_score"] = round(0.2 + (i % 10) / 20, 2)
            test["hunt"]["evidence"]["allocation_sites"][0]["line"] = 12 + (i % 3)
        else:
            test = passing_test(nodeid, 0.0 if i % 50 == 0 else None)
            test["outcome"] = outcomes[i % len(outcomes)]
            test["rss_delta"] = (i * 7919) % 300_000 - 20_000
            test["duration"] = (i % 97) / 1000
        tests.append(test)
    report["tests"] = tests
    report["packages"] = {f"pkg_{i:02d}": package_entry(f"pkg_{i:02d}", 500_000 + i * 40_960,
                                                         score=0.5 if i == 0 else 0.0,
                                                         trend="increasing" if i == 0 else "stable")
                          for i in range(packages)}
    report["package_histories"] = {f"pkg_{i:02d}": [[T0 + j, 500_000 + i * 40_960 + (j * 2048 if i == 0 else 0)]
                                                    for j in range(60)] for i in range(packages)}
    return report
