"""The report model: one JSON-able dict (docs/report-format.md) that every renderer reads."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any

import pytest

from pytest_memtrack import __version__
from pytest_memtrack.hunt.native import NATIVE_READING
from pytest_memtrack.report.loading import FORMAT_VERSION
from pytest_memtrack.settings import Settings
from pytest_memtrack.tracking.loader import LazyLoader

_OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 3, "error": 4}


class TestRecorder:
    """Collects one entry per test from the reports the reporting process logs (its own or its workers')."""

    __test__ = False

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        entry = self.entries.get(nodeid)
        if entry is None:  # (not setdefault: its default dict would be built for each of a test's three reports)
            entry = self.entries[nodeid] = {
                "nodeid": nodeid, "outcome": "passed", "duration": 0.0, "worker": None,
                "rss_before": None, "rss_after": None, "rss_delta": None, "rss_peak": None,
                "leak_score": None, "limit": None, "leaking": False, "hunt": None, "message": None,
            }
        entry["duration"] += float(getattr(report, "duration", 0.0) or 0.0)
        outcome: str = report.outcome
        if outcome != "passed" or hasattr(report, "wasxfail"):  # (a plain pass changes no entry's outcome)
            if report.failed and report.when != "call":
                outcome = "error"
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            if _OUTCOME_RANK.get(outcome, 2) > _OUTCOME_RANK.get(entry["outcome"], 2) or (
                    report.when == "call" and entry["outcome"] == "passed"):
                entry["outcome"] = outcome
        data = getattr(report, "memtrack", None)
        if isinstance(data, dict):
            entry.update(data)
        node = getattr(report, "node", None)
        if entry["worker"] is None and node is not None:
            entry["worker"] = getattr(getattr(node, "gateway", None), "id", None)

    def tests(self) -> list[dict[str, Any]]:
        return list(self.entries.values())


def platform_name() -> str:
    """``platform.platform()``'s string, e.g. ``Linux-6.1.0-x86_64-with-glibc2.36``, read without what makes that
    call cost ~15 ms at every session's end: a ``uname -p`` subprocess for the processor (``unknown`` on Linux, so
    left out) and a scan of the interpreter's binary for the C library, which ``confstr`` names directly."""
    uname = os.uname() if hasattr(os, "uname") else None
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") and uname is not None else None
    if uname is None or uname.sysname != "Linux" or not libc or " " not in libc:
        return platform.platform()
    name, version = libc.split(" ", 1)
    return "-".join((uname.sysname, uname.release, uname.machine, "with", name + version)).replace(" ", "_")


def run_info(config: pytest.Config, started: float, exitstatus: int | None, interrupted: bool, workers: int,
             settings: Settings) -> dict[str, Any]:
    finished = time.time()
    return {
        "started": started, "finished": finished, "duration": finished - started,
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform_name(), "machine": platform.machine(), "hostname": socket.gethostname(),
        "pid": os.getpid(), "argv": list(sys.argv), "rootdir": str(config.rootpath), "workers": workers,
        "interrupted": interrupted, "exitstatus": exitstatus, "config": settings.as_dict(),
        "native_reading": NATIVE_READING,  # which reading the hunts' native kind is: "malloc" or "rss"
    }


def package_sections(loader: LazyLoader, leak_threshold: float) -> dict[str, Any]:
    """The report's package sections (summary, leaks, suggestions, packages, their histories) read from ``loader``:
    one assembly for a session's report and for a merge of shards (``report.merge``)."""
    packages, histories = package_snapshot(loader)
    return {
        "summary": loader.get_memory_usage_summary(),
        "leaks": loader.get_memory_leaks_report(leak_threshold),
        "suggestions": loader.get_optimization_suggestions_report(),
        "packages": packages,
        "package_histories": histories,
    }


def build_report(loader: LazyLoader, recorder: TestRecorder, *, settings: Settings, config: pytest.Config,
                 started: float, exitstatus: int | None, interrupted: bool, workers: int,
                 crashed_workers: list[str], problems: list[str]) -> dict[str, Any]:
    run = run_info(config, started, exitstatus, interrupted, workers, settings)
    run["crashed_workers"] = list(crashed_workers)
    run["problems"] = list(problems)
    # What was imported but not tracked, and how to include it (--memtrack-measure-all).
    run["untracked_packages"] = sorted(loader.left_out - set(loader.package_names()))
    return {
        "format_version": FORMAT_VERSION,
        "tool": {"name": "pytest-memtrack", "version": __version__},
        "run": run,
        **package_sections(loader, settings.leak_threshold),
        "tests": recorder.tests(),
        "comparison": None,
    }


def package_snapshot(loader: LazyLoader, names: list[str] | None = None
                     ) -> tuple[dict[str, Any], dict[str, list[list[float]]]]:
    """Each tracked package's payload (with its forecast) and its memory history ``[[time, bytes], ...]``: the
    report's ``packages`` and ``package_histories`` (also what the live dashboard shows while the session runs)."""
    packages = loader.get_package_memory_infos(names)
    histories = {}
    for name in packages:
        info = loader.get_package_info(name)
        if info is None:
            continue
        with info.lock:
            histories[name] = [[t, b] for t, b in info.memory_metrics.memory_history]
    return packages, histories


def leaking_tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((t for t in report.get("tests", []) if t.get("leaking")), key=lambda t: -(t["leak_score"] or 0))
