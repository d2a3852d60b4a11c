"""The stateful side of ``pytest --memtrack``: per-test readings, leak hunts, package passes, the report.

Registered by ``plugin.pytest_configure`` only when tracking is on. Every process of a session (plain, xdist
worker) measures its own tests and packages; the process that reports (plain, or the xdist controller) collects
test entries from the reports it logs (they travel from workers as a ``memtrack`` attribute of the teardown
report) and package data from ``workeroutput`` (``merge.py``), then builds one report model.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_memtrack.hunt.protocol import MARKER, MarkerError, limit_for
from pytest_memtrack.report.atomic import DeferredInterrupt, describe_os_error
from pytest_memtrack.report.json_report import write_json
from pytest_memtrack.report.model import TestRecorder, build_report
from pytest_memtrack.report.terminal import write_summary
from pytest_memtrack.settings import Settings
from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader
from pytest_memtrack.tracking.merge import export_packages, import_packages
from pytest_memtrack.tracking.monitor import PASS_NOISE_BYTES
from pytest_memtrack.tracking.process import ProcessMemory
from pytest_memtrack.tracking.project import project_packages
from pytest_memtrack.tracking.tracing import tracemalloc

#: The adaptive package passes' shortest spacing in seconds: the per-package history gains a point every half second
#: at most, which a bounded history of hundreds of points spreads over minutes of a suite.
MIN_PASS_INTERVAL = 0.5

#: An item's leak limit, or the marker error, once looked up (``MemtrackSession.limit_for``).
_LIMIT = pytest.StashKey[tuple["float | None", "MarkerError | None"]]()


def _marked(item: pytest.Item, name: str) -> bool:
    """Whether ``item`` or one of its parents carries the marker ``name``: what ``get_closest_marker`` finds,
    without its generators (this runs for every test)."""
    node: pytest.Item | pytest.Collector | None = item
    while node is not None:
        for mark in node.own_markers:
            if mark.name == name:
                return True
        node = node.parent
    return False


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
        self.loader.history_size = self.loader.room.history_size = settings.history_size
        self.loader.room.budget = settings.memory_budget
        self.loader.auto_unload.enabled = settings.auto_unload
        self.loader.auto_unload.idle_seconds = settings.unload_idle
        self.loader.leak_threshold = settings.leak_threshold
        self.loader.monitor.leak_threshold = settings.leak_threshold
        self.loader.monitor.noise_bytes = PASS_NOISE_BYTES
        self.loader.track_all = settings.measure_all
        if loader is None:  # (the early loader has them: plugin.pytest_load_initial_conftests, same rootdir)
            self.loader.project = project_packages(str(config.rootpath))
        self.loader.observe_imports()
        self._memory = ProcessMemory()
        self._current: dict[str, dict[str, Any]] = {}
        self._hunting = False
        self._pending_hunt: set[str] = set()  # hunted tests whose reported teardown gets the hunt's data
        self._pass_cost = 0.0
        self._next_pass = 0.0  # perf_counter() time from which the next package pass is due
        self.passes = 0
        self.recorder = TestRecorder()
        self.worker_packages: list[dict[str, Any]] = []
        self.workers_seen = 0
        self.crashed_workers: list[str] = []
        self.problems: list[str] = []
        self.notes: list[str] = []  # what happened while the reports were written (Ctrl-C)
        self.json_error: str | None = None  # why the JSON report was not written
        self.json_written = False
        self.interrupted = False
        self.started = time.time()
        self.report: dict[str, Any] | None = None
        self._started_tracing = False
        if settings.trace_all and not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self._started_tracing = True

    # ------------------------------------------------------------------ package passes
    def _interval(self) -> float:
        """Seconds to the next package pass: the set interval, else as far apart as keeps the passes within the
        overhead budget, and at least ``MIN_PASS_INTERVAL`` apart (a pass of a small project takes 1-3 ms)."""
        if self.settings.check_interval is not None:
            return self.settings.check_interval
        return max(MIN_PASS_INTERVAL, self._pass_cost / self.settings.overhead_budget)

    def package_pass(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now < self._next_pass:
            return
        try:
            readings = self.loader.measure_loaded()
            self.loader.record_readings(readings)
        except Exception as exc:  # never break the user's run over our own reading
            self.problems.append(f"package memory pass failed: {type(exc).__name__}: {exc}")
        self._pass_cost = time.perf_counter() - now
        self._next_pass = time.perf_counter() + self._interval()
        self.passes += 1

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Collection imported them: now it is known which are the suite's (the folders of its test files).
        root = str(self.config.rootpath)
        # (Per test file, not per test: a module's tests share their file's path object.)
        files = {item.path for item in session.items if hasattr(item, "path")}
        folders = {str(path.parent) for path in files}
        self.loader.forget_test_packages(folder for folder in folders if folder != root)
        self.package_pass(force=True)
        if self.settings.max_leak_score is not None or any(_marked(item, MARKER) for item in session.items):
            self.config.pluginmanager.register(_HuntHooks(self), f"memtrack-hunts-{id(self)}")

    # ------------------------------------------------------------------ which tests are hunted
    def limit_for(self, item: pytest.Item) -> float | None:
        """The leak limit for ``item`` (None: not hunted); raises ``MarkerError`` for a bad marker. Without
        ``--memtrack-max-leak-score`` an unmarked test takes one walk over its nodes' markers (a microsecond);
        otherwise ``limit_for`` is asked once per test (tens of microseconds) and its answer kept for the call hook."""
        if self.settings.max_leak_score is None and not _marked(item, MARKER):
            return None  # what limit_for says for an unmarked test, without its two marker lookups
        known = item.stash.get(_LIMIT, None)
        if known is None:
            try:
                known = (limit_for(item, self.settings.max_leak_score), None)
            except MarkerError as exc:
                known = (None, exc)
            item.stash[_LIMIT] = known
        if known[1] is not None:
            raise known[1]
        return known[0]

    def check_marker(self, item: pytest.Item) -> None:
        """Fails the call of a test whose ``max_leak_score`` marker is bad, with the marker's message."""
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
        self._current[nodeid] = {"rss_before": self._memory.start()}

    def _attach(self, report: pytest.TestReport, state: dict[str, Any], nodeid: str) -> None:
        self._pending_hunt.discard(nodeid)
        if "rss_after" in state:  # a hunted test: read when its reported run ended
            rss_after, rss_peak = state["rss_after"], state["rss_peak"]
        else:
            rss_after, rss_peak = self._memory.end()
        rss_before = state.setdefault("rss_before", rss_after)
        entry: dict[str, Any] = {
            "rss_before": rss_before, "rss_after": rss_after, "rss_delta": rss_after - rss_before,
            "rss_peak": rss_peak, "worker": self.worker_id,
            "leak_score": None, "limit": None, "leaking": False, "hunt": None, "message": None,
        }
        outcome = state.get("hunt")
        if outcome is not None:
            result, limit, message = outcome
            entry.update(leak_score=result.score, limit=limit, leaking=result.score > limit,
                         hunt=result.to_dict(), message=message)
        report.memtrack = entry  # type: ignore[attr-defined]  # plain types: travels through xdist
        # JUnit XML's properties: what the test did to memory, for a CI page's view of it: the RSS it added (or gave
        # back), its peak when that rose above both ends, its leak score when hunted. A test that moved none gets
        # none: most tests of most suites, and each property costs pytest's XML writer ~8 µs a test, the properties
        # node as much. Every figure of every test is in the JSON report.
        properties: list[tuple[str, object]] = []
        if entry["rss_delta"]:
            properties.append(("memtrack_rss_delta", entry["rss_delta"]))
        if rss_peak is not None and rss_peak > max(rss_before, rss_after):
            properties.append(("memtrack_rss_peak", rss_peak))
        if entry["leak_score"] is not None:
            properties += [("memtrack_leak_score", entry["leak_score"]), ("memtrack_leak_limit", entry["limit"])]
        if properties:
            report.user_properties.extend(properties)

    def run_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Hunted tests: the reported run, then the hunt's unreported repeats (``hunt.protocol.run_hunted``);
        the reports are logged once, the call failed when the test leaks beyond its limit."""
        if self._hunting or not isinstance(item, pytest.Function):
            return None
        try:
            limit = self.limit_for(item)
        except MarkerError:
            return None  # the ordinary protocol fails it in pytest_runtest_call
        if limit is None:
            return None
        from pytest_memtrack.hunt.message import LeakFailure, describe  # the hunt's: imported by the first hunt
        from pytest_memtrack.hunt.protocol import run_hunted
        from pytest_memtrack.hunt.verdict import HuntParameters

        params = HuntParameters(
            limit=limit, warmup_runs=self.settings.warmup_runs, max_runs=self.settings.max_runs,
            leak_reference=self.settings.leak_reference, native_floor=self.settings.native_floor,
            time_budget=self.settings.hunt_budget, screen=not self.settings.trace_hunts)
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        self._pending_hunt.add(item.nodeid)  # its teardown reports get their figures below
        state = self._current.pop(item.nodeid, {})

        def reported_run_done() -> None:
            state.update(zip(("rss_after", "rss_peak"), self._memory.end()))

        def hunting(on: bool) -> None:
            self._hunting = on

        try:
            run = run_hunted(item, nextitem, params, root=str(self.config.rootpath),
                             after_reported_run=reported_run_done, hunting=hunting, problems=self.problems)
        finally:
            self._pending_hunt.discard(item.nodeid)
        message = None
        if run.result is not None:
            run.result.runs += 1  # the reported run
            message = describe(run.result, limit, str(self.config.rootpath)) if run.result.score > limit else None
            state["hunt"] = (run.result, limit, message)
            # The package view agrees with the hunt: its growth is charged to the packages it was allocated in.
            self.loader.charge_hunt(item.nodeid, run.result.evidence.get("packages", []),
                                    run.result.kinds["memory"].score)
        for report in run.reports:
            if report.when == "teardown":
                self._attach(report, state, item.nodeid)
            if message is not None and report.when == "call" and report.passed:
                report.outcome = "failed"
                report.longrepr = LeakFailure(message)  # type: ignore[assignment]  # pytest renders any toterminal()
                report.memtrack_leak = True  # type: ignore[attr-defined]  # travels through xdist: see revive
        for report in run.reports:
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The test's figures go on its teardown report as it is logged, before any other plugin sees it (JUnit XML's
        properties, xdist's worker sends it), then into the report's record. (Attached when logged, not in a
        ``pytest_runtest_makereport`` wrapper: a wrapper costs every phase of every test, repeats included.)"""
        if report.when == "teardown" and not self._hunting:
            nodeid = report.nodeid
            state = None if nodeid in self._pending_hunt else self._current.pop(nodeid, None)
            # (Under xdist the controller logs the workers' reports: they carry their figures already.)
            if state is not None and getattr(report, "memtrack", None) is None:
                self._attach(report, state, nodeid)
            if time.perf_counter() >= self._next_pass:  # between tests (a test's last report is its teardown)
                self.package_pass()
        if not self.is_worker:
            if getattr(report, "memtrack_leak", False):  # a leak reported by an xdist worker: its message as ours
                from pytest_memtrack.hunt.message import revive

                revive(report)
            self.recorder.add(report)

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
                "worker": self.worker_id, "packages": export_packages(self.loader), "problems": self.problems,
                "left_out": sorted(self.loader.left_out)}
            return
        # Ctrl-C while the reports are written: the first is held until they are finished, a second abandons the
        # one being written (which keeps its previous file); never a traceback, and the session ends interrupted.
        with DeferredInterrupt() as held:
            try:
                self._finish(session, exitstatus)
            except KeyboardInterrupt:
                pass
        if held.count:
            if held.count > 1:
                self.notes.append("Ctrl-C twice while the reports were written: writing them was abandoned; a "
                                  "report not written keeps its previous file.")
            else:
                self.notes.append("Ctrl-C while the reports were written: they were finished first; the session "
                                  "ends as interrupted (exit status 2).")
            self.interrupted = True
            session.exitstatus = pytest.ExitCode.INTERRUPTED

    def _finish(self, session: pytest.Session, exitstatus: int) -> None:
        try:
            loader = self.loader
            if self.worker_packages:
                loader = import_packages(self.worker_packages, like=self.loader)
                for data in self.worker_packages:
                    self.problems.extend(data.get("problems", []))
                    loader.left_out.update(data.get("left_out", []))
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
            try:
                write_json(report, self.settings.json_path)
                self.json_written = True
            except OSError as exc:  # the exit status stays the tests': our own failure never fails a suite
                self.json_error = describe_os_error(exc)
            except KeyboardInterrupt:
                self.json_error = "interrupted (Ctrl-C)"
                raise
        try:
            hook.pytest_memtrack_report_ready(session=session, report=report)
        except Exception as exc:
            self.problems.append(f"writing a report failed: {type(exc).__name__}: {exc}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        write_summary(terminalreporter, self.report, self.problems, self.settings, notes=self.notes,
                      json_written=self.json_written, json_error=self.json_error)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.loader.stop_observing()
        self.loader.stop_monitoring()  # background checks the code under test started on the session's loader
        self._memory.close()
        reset_lazy_loader(self.previous_loader)
        if self._started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()


class _HuntHooks:
    """The hooks of hunted tests, registered after collection only when a test of the session can be hunted
    (``--memtrack-max-leak-score``, or a ``max_leak_score`` marker on some test): a session that hunts nothing
    pays no hook for it on every test."""

    def __init__(self, session: MemtrackSession) -> None:
        self._session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        return self._session.run_protocol(item, nextitem)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self._session.check_marker(item)
