"""The stateful side of ``pytest --memtrack``: per-test readings, leak hunts, package passes, the report.

Registered by ``plugin.pytest_configure`` only when tracking is on. Every process of a session (plain, xdist
worker) measures its own tests and packages; the process that reports (plain, or the xdist controller) collects
test entries from the reports it logs (they travel from workers as a ``memtrack`` attribute of the teardown
report) and package data from ``workeroutput`` (``merge.py``), then builds one report model.
"""

from __future__ import annotations

import math
import os
import sys
import time
import tracemalloc
from typing import Any

import psutil
import pytest

from pytest_memtrack.hunt import runner as hunting
from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader
from pytest_memtrack.tracking.merge import export_packages, import_packages
from pytest_memtrack.report.model import TestRecorder, build_report
from pytest_memtrack.hunt.protocol import clean_pass, finish_teardown, repeats_unreported
from pytest_memtrack.report.terminal import write_summary
from pytest_memtrack.settings import Settings

MARKER = "max_leak_score"


class MarkerError(Exception):
    """A malformed ``max_leak_score`` marker: fails that test, never the run."""


def marker_limit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """The limit of ``@pytest.mark.max_leak_score(limit)``; raises ``MarkerError`` naming the bad value."""
    values = list(args) + ([kwargs["limit"]] if "limit" in kwargs else [])
    unknown = sorted(set(kwargs) - {"limit"})
    if unknown:
        raise MarkerError(f"{MARKER} marker: unknown argument {unknown[0]!r}; use {MARKER}(limit) with 0 <= limit <= 1")
    if len(values) != 1:
        raise MarkerError(f"{MARKER} marker needs exactly one limit between 0 and 1, got {len(values)} arguments")
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise MarkerError(f"{MARKER} marker: the limit must be a number between 0 and 1, got {value!r}")
    return float(value)


class ProcessMemory:
    """Per-test RSS and peak RSS, read cheaply: Linux's ``/proc/self/statm`` and ``VmHWM`` through file
    descriptors kept open (a few microseconds a reading; psutil elsewhere). The peak is the high-water mark,
    reset before each test through ``/proc/self/clear_refs``."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._statm = self._open("/proc/self/statm", os.O_RDONLY)
        self._status = self._open("/proc/self/status", os.O_RDONLY)
        self._clear = self._open("/proc/self/clear_refs", os.O_WRONLY)
        self.peak_available = self._status is not None and self._clear is not None and self.reset_peak()

    @staticmethod
    def _open(path: str, flags: int) -> int | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return os.open(path, flags)
        except OSError:
            return None

    def rss(self) -> int:
        if self._statm is not None:
            try:
                return int(os.pread(self._statm, 128, 0).split()[1]) * self._page
            except (OSError, ValueError, IndexError):
                pass
        return self._process.memory_info().rss

    def reset_peak(self) -> bool:
        if self._clear is None:
            return False
        try:
            os.write(self._clear, b"5")
            return True
        except OSError:
            return False

    def peak(self) -> int | None:
        if not self.peak_available or self._status is None:
            return None
        try:
            text = os.pread(self._status, 4096, 0)
            start = text.index(b"VmHWM:")
            return int(text[start + 6:text.index(b"kB", start)]) * 1024
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        for fd in (self._statm, self._status, self._clear):
            if fd is not None:
                os.close(fd)
        self._statm = self._status = self._clear = None


class MemtrackSession:
    def __init__(self, config: pytest.Config, settings: Settings, loader: LazyLoader | None = None) -> None:
        self.config = config
        self.settings = settings
        self.is_worker = hasattr(config, "workerinput")
        self.worker_id = config.workerinput.get("workerid") if self.is_worker else None  # type: ignore[attr-defined]
        # One loader per session, installed as the process's loader while the session runs (in-process pytester
        # runs nest sessions: each gets its own and the outer one is restored at unconfigure).
        self.loader: LazyLoader = loader or LazyLoader()
        self.previous_loader = reset_lazy_loader(self.loader)
        self.loader.history_size = settings.history_size
        self.loader.leak_threshold = settings.leak_threshold
        self.loader.monitor.leak_threshold = settings.leak_threshold
        self.loader.track_all = settings.measure_all
        self.loader.observe_imports()
        self._memory = ProcessMemory()
        self._current: dict[str, dict[str, Any]] = {}
        self._hunting = False
        self._pending_hunt: set[str] = set()  # hunted tests whose reported teardown gets the hunt's data
        self._last_pass = 0.0
        self._pass_cost = 0.0
        self.passes = 0
        self.recorder = TestRecorder()
        self.worker_packages: list[dict[str, Any]] = []
        self.workers_seen = 0
        self.crashed_workers: list[str] = []
        self.problems: list[str] = []
        self.interrupted = False
        self.started = time.time()
        self.report: dict[str, Any] | None = None
        self._started_tracing = False
        if settings.trace_all and not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self._started_tracing = True

    # ------------------------------------------------------------------ package passes
    def _interval(self) -> float:
        if self.settings.check_interval is not None:
            return self.settings.check_interval
        return max(0.2, self._pass_cost / self.settings.overhead_budget)

    def package_pass(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_pass < self._interval():
            return
        try:
            readings = self.loader.measure_loaded()
            self.loader.record_readings(readings)
        except Exception as exc:  # never break the user's run over our own reading
            self.problems.append(f"package memory pass failed: {type(exc).__name__}: {exc}")
        self._pass_cost = time.perf_counter() - now
        self._last_pass = time.perf_counter()
        self.passes += 1

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.loader.forget_test_packages()  # collection imported them: now it is known which are the suite's
        self.package_pass(force=True)

    # ------------------------------------------------------------------ which tests are hunted
    def limit_for(self, item: pytest.Item) -> float | None:
        """The leak limit for ``item`` (None: not hunted); raises ``MarkerError`` for a bad marker."""
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            return marker_limit(marker.args, marker.kwargs)
        if item.get_closest_marker("memtrack_skip") is not None:
            return None
        return self.settings.max_leak_score

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        if self._hunting:
            return
        try:
            self.limit_for(item)
        except MarkerError as exc:
            message = str(exc)
        else:
            return
        pytest.fail(message, pytrace=False)

    # ------------------------------------------------------------------ per-test readings
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self._hunting:
            return
        self._memory.reset_peak()
        self._current[nodeid] = {"rss_before": self._memory.rss(), "started": time.perf_counter()}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        if call.when == "teardown" and not self._hunting and item.nodeid not in self._pending_hunt:
            state = self._current.pop(item.nodeid, None)
            if state is not None:
                self._attach(report, state)
        return report

    def _attach(self, report: pytest.TestReport, state: dict[str, Any]) -> None:
        self._pending_hunt.discard(report.nodeid)
        rss_after = state["rss_after"] if "rss_after" in state else self._memory.rss()
        state.setdefault("rss_before", rss_after)
        entry: dict[str, Any] = {
            "rss_before": state["rss_before"], "rss_after": rss_after, "rss_delta": rss_after - state["rss_before"],
            "rss_peak": state["rss_peak"] if "rss_peak" in state else self._memory.peak(), "worker": self.worker_id,
            "leak_score": None, "limit": None, "leaking": False, "hunt": None, "message": None,
        }
        outcome = state.get("hunt")
        if outcome is not None:
            result, limit, message = outcome
            entry.update(leak_score=result.score, limit=limit, leaking=result.score > limit,
                         hunt=result.to_dict(), message=message)
        report.memtrack = entry  # type: ignore[attr-defined]  # plain types: travels through xdist
        report.user_properties.extend([
            ("memtrack_rss_before", entry["rss_before"]), ("memtrack_rss_after", rss_after),
            ("memtrack_rss_delta", entry["rss_delta"]),
        ] + ([("memtrack_rss_peak", entry["rss_peak"])] if entry["rss_peak"] is not None else [])
          + ([("memtrack_leak_score", entry["leak_score"]), ("memtrack_leak_limit", entry["limit"])]
             if entry["leak_score"] is not None else []))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Hunted tests: run the protocol once for real, then repeat it unreported (wider fixtures kept up).

        The reported run comes first, so the test's outcome is that of its first execution, as without the
        plugin: a test that is not idempotent (it pops from a module-level dict, a library caches what it warned
        about) fails when repeated, which ends the hunt and changes nothing else. Its teardown stops at the
        test's parent; the rest of the teardown towards ``nextitem`` (module- or class-scoped fixtures the next
        test does not share) runs after the hunt and is folded into the reported teardown.
        """
        if self._hunting or not isinstance(item, pytest.Function):
            return None
        try:
            limit = self.limit_for(item)
        except MarkerError:
            return None  # the ordinary protocol fails it in pytest_runtest_call
        if limit is None:
            return None
        from _pytest.runner import runtestprotocol

        params = hunting.HuntParameters(
            limit=limit, warmup_runs=self.settings.warmup_runs, max_runs=self.settings.max_runs,
            leak_reference=self.settings.leak_reference, native_floor=self.settings.native_floor,
            time_budget=self.settings.hunt_budget)

        # Tearing down "to the item's parent" finalizes the function-scoped fixtures only, so every repeat
        # sets them up afresh while module-, class- and session-scoped ones stay up.
        keep_up = item.parent

        def run_once() -> bool:
            reports = runtestprotocol(item, nextitem=keep_up, log=False)  # type: ignore[arg-type]
            return clean_pass(reports)

        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        self._pending_hunt.add(item.nodeid)  # its teardown reports get their figures below
        # Traced from the reported run on, as the hunt traces its warm-ups: what the first run puts in a bounded
        # cache is then traced too, and its eviction during the hunt shows as a free instead of hiding one.
        started_tracing = not tracemalloc.is_tracing()
        if started_tracing:
            tracemalloc.start(hunting.TRACE_FRAMES)
        try:
            reports = runtestprotocol(item, nextitem=keep_up, log=False)  # type: ignore[arg-type]
            state = {**self._current.pop(item.nodeid, {}), "rss_after": self._memory.rss(),
                     "rss_peak": self._memory.peak()}
            result = None
            if clean_pass(reports) and not (item.session.shouldfail or item.session.shouldstop):
                # What the repeats add to the item (captured output sections, record_property entries) is
                # theirs: the reported teardown and the JUnit XML show the reported run's only.
                sections, properties = list(item._report_sections), list(item.user_properties)
                self._hunting = True
                try:
                    with repeats_unreported(self.config, item.nodeid):
                        result = hunting.hunt(run_once, params, root=str(self.config.rootpath))
                except Exception as exc:  # our own failure must not fail the user's test
                    self.problems.append(f"leak hunt of {item.nodeid} failed: {type(exc).__name__}: {exc}")
                finally:
                    self._hunting = False
                    item._report_sections[:] = sections
                    item.user_properties[:] = properties
            if started_tracing and tracemalloc.is_tracing():
                tracemalloc.stop()
                started_tracing = False
            if item.session.shouldfail or item.session.shouldstop:
                nextitem = None
            reports[-1] = finish_teardown(item, reports[-1], nextitem)
        finally:
            self._pending_hunt.discard(item.nodeid)
            if started_tracing and tracemalloc.is_tracing():
                tracemalloc.stop()
        message = None
        if result is not None:
            result.runs += 1  # the reported run
            message = hunting.describe(result, limit) if result.score > limit else None
            state["hunt"] = (result, limit, message)
        for report in reports:
            if report.when == "teardown":
                self._attach(report, state)
            if message is not None and report.when == "call" and report.passed:
                report.outcome = "failed"
                report.longrepr = message
        for report in reports:
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_worker:
            self.recorder.add(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.package_pass()

    # ------------------------------------------------------------------ xdist
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", None) or {}
        data = output.get("memtrack")
        worker = getattr(getattr(node, "gateway", None), "id", "?")
        if error or data is None:
            self.crashed_workers.append(str(worker))
            self.interrupted = True
        if data is not None:
            self.workers_seen += 1
            self.worker_packages.append(data)

    # ------------------------------------------------------------------ end of session
    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # A closing reading only when the budget allows one, or the history would have no end point: a forced
        # pass here cost ~5% of a 3 s suite (boltons) for a reading at most one interval newer.
        self.package_pass(force=self.passes < 2)
        if self.is_worker:
            self.config.workeroutput["memtrack"] = {  # type: ignore[attr-defined]
                "worker": self.worker_id, "packages": export_packages(self.loader), "problems": self.problems}
            return
        try:
            loader = self.loader
            if self.worker_packages:
                loader = import_packages(self.worker_packages, like=self.loader)
                for data in self.worker_packages:
                    self.problems.extend(data.get("problems", []))
            if exitstatus == pytest.ExitCode.INTERRUPTED:
                self.interrupted = True
            self.report = build_report(
                loader, self.recorder, settings=self.settings, config=self.config, started=self.started,
                exitstatus=int(exitstatus), interrupted=self.interrupted, workers=self.workers_seen,
                crashed_workers=self.crashed_workers, problems=self.problems)
        except Exception as exc:
            self.problems.append(f"building the report failed: {type(exc).__name__}: {exc}")
            return
        self._publish(session)

    def _publish(self, session: pytest.Session) -> None:
        report = self.report
        assert report is not None
        hook = self.config.hook
        try:
            hook.pytest_memtrack_enrich_report(session=session, report=report)
        except Exception as exc:
            self.problems.append(f"a report extension failed: {type(exc).__name__}: {exc}")
        report["run"]["exitstatus"] = int(session.exitstatus)  # a regression gate may have failed the session
        if self.settings.json_path:
            from pytest_memtrack.report.json_report import write_json

            try:
                write_json(report, self.settings.json_path)
            except OSError as exc:
                self.problems.append(f"could not write the JSON report: {exc}")
        try:
            hook.pytest_memtrack_report_ready(session=session, report=report)
        except Exception as exc:
            self.problems.append(f"writing a report failed: {type(exc).__name__}: {exc}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        write_summary(terminalreporter, self.report, self.problems, self.settings)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.loader.stop_observing()
        self.loader.stop_monitoring()  # background checks the code under test started on the session's loader
        self._memory.close()
        reset_lazy_loader(self.previous_loader)
        if self._started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
