"""What the dashboard and ``GET /api/session`` know about the session: progress, the leaking tests found so far,
and, once it ends, the verdict and where the reports are.

Two sources answer the same two questions (``model()``: a report model, complete or growing; ``payload()``: the
session payload of ``schemas/session.json``): :class:`LiveSession`, fed by the live server's pytest hooks with the
very test entries the report is built from (``report.model.TestRecorder``), and :class:`SavedSession` over a saved
report. The verdict and the per-test figures come from ``report.verdict`` and ``report.cards``, as in every report.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

import pytest

from pytest_memtrack.report.cards import summary_of_test
from pytest_memtrack.report.culprits import culprit
from pytest_memtrack.report.model import TestRecorder, package_snapshot
from pytest_memtrack.report.verdict import advice, headline
from pytest_memtrack.server.sources import DEFAULT_THRESHOLD, LiveSource, MemorySource
from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.units import finite_number

#: Longest a request waits for a hunt to finish measuring before it is answered anyway (seconds).
QUIET_WAIT = 15.0
#: Leaking tests listed in the payload (highest score first); the count says how many there are in all.
MAX_LISTED = 50


class SessionSource(Protocol):
    """What the dashboard reads; safe to call from the server's threads while the session runs."""

    def model(self) -> dict[str, Any]: ...

    def payload(self) -> dict[str, Any]: ...

    def serving(self) -> AbstractContextManager[None]:
        """Held while a request is answered from this session (a live one waits for a hunt to finish first)."""
        ...

    def wait_quiet(self) -> None:
        """Return when a new connection may be served (a live session: when no hunt is measuring)."""
        ...

    def watched(self) -> None:
        """A dashboard page is being answered (it polls while the session runs)."""
        ...


def session_payload(model: Mapping[str, Any], *, live: bool, finished: bool, total: int | None,
                    current: str | None, reports: Sequence[str], updated: float,
                    done: int | None = None) -> dict[str, Any]:
    """The data of ``GET /api/session`` for a report model (complete or not); ``done``: tests whose teardown was
    reported (default: every test of the model)."""
    tests = [t for t in model.get("tests") or [] if isinstance(t, Mapping)]
    run = model.get("run") if isinstance(model.get("run"), Mapping) else {}
    said = headline(model)
    leaking = sorted((t for t in tests if t.get("leaking")), key=lambda t: -(t.get("leak_score") or 0.0))
    native = run.get("native_reading") if isinstance(run, Mapping) else None
    started = run.get("started") if isinstance(run, Mapping) else None
    return {
        "state": "finished" if finished else "running",
        "live": live,
        "tests_done": len(tests) if done is None else done,
        "tests_total": total,
        "current_test": None if finished else current,
        "outcomes": dict(sorted(Counter(str(t.get("outcome")) for t in tests).items())),
        "hunted": said.hunted,
        "leaking": said.leaking,
        "verdict": {"text": said.text, "tone": said.tone},
        "leaking_tests": [_leaking_test(t, native) for t in leaking[:MAX_LISTED]],
        "started": started if isinstance(started, (int, float)) else None,
        "updated": updated,
        "reports": list(reports),
    }


def _leaking_test(test: Mapping[str, Any], native_reading: Any) -> dict[str, Any]:
    shown = summary_of_test(test)
    reading = native_reading if isinstance(native_reading, str) else None
    return {"nodeid": shown["nodeid"], "outcome": shown["outcome"], "leak_score": finite_number(test.get("leak_score")),
            "limit": finite_number(test.get("limit")), "kind": shown["kind"] or None, "per_run": shown["per_run"],
            "culprit": culprit(test), "advice": advice(test, reading), "reproduce": shown["reproduce"]}


class SavedSession:
    """A saved report: finished, read-only; ``path`` is the file it was read from (shown as the report's path)."""

    def __init__(self, report: Mapping[str, Any], path: str | None = None) -> None:
        self._report = dict(report)
        self._path = path

    def model(self) -> dict[str, Any]:
        return self._report

    def serving(self) -> AbstractContextManager[None]:
        return nullcontext()

    def wait_quiet(self) -> None:
        return None

    def watched(self) -> None:
        return None

    def payload(self) -> dict[str, Any]:
        run = self._report.get("run") if isinstance(self._report.get("run"), Mapping) else {}
        tests = self._report.get("tests") or []
        finished = run.get("finished") if isinstance(run, Mapping) else None
        return session_payload(self._report, live=False, finished=True, total=len(tests), current=None,
                               reports=[self._path] if self._path else [],
                               updated=finished if isinstance(finished, (int, float)) else 0.0)


class LiveSession:
    """The running session, told by the live server's hooks (:class:`ProgressHooks`) what happens.

    Tests come from the same logged reports the session's report is built from; packages from the memory source
    (the live loader) at each request. Once the session's report is ready it is the model, as in the files.
    """

    def __init__(self, source: MemorySource, threshold: float = DEFAULT_THRESHOLD) -> None:
        self._source = source
        self._threshold = threshold
        self._lock = threading.Lock()
        self._recorder = TestRecorder()
        self._done: set[str] = set()
        self._started = time.time()
        self._total: int | None = None
        self._current: str | None = None
        self._report: dict[str, Any] | None = None
        self._finished = False
        self._reports: list[str] = []
        # Set while no hunt measures: a hunt reads the whole process's memory, so accepting a connection or
        # rendering the page meanwhile (on the server's threads) would be charged to the hunted test, or hide its
        # leak when freed. New connections and answers wait for it (up to QUIET_WAIT); a hunt waits for the answer
        # being rendered (``_serving``).
        self._quiet = threading.Event()
        self._quiet.set()
        self._serving = threading.Lock()
        self._watched = 0.0  # when a client last asked (the dashboard polls every 2 s)
        self._finish_seen = threading.Event()  # a client has been told that the session finished

    # -- told by the hooks -------------------------------------------------------------------------------------
    def collected(self, total: int) -> None:
        with self._lock:
            self._total = total

    def test_started(self, nodeid: str) -> None:
        with self._lock:
            self._current = nodeid

    def test_logged(self, report: pytest.TestReport) -> None:
        with self._lock:
            self._recorder.add(report)
            if report.when == "teardown":
                self._done.add(report.nodeid)

    def hunting(self, on: bool) -> None:
        if on:
            with self._serving:
                self._quiet.clear()
        else:
            self._quiet.set()

    def wait_quiet(self) -> None:
        self._quiet.wait(QUIET_WAIT)

    def watched(self) -> None:
        with self._lock:
            self._watched = time.time()
            if self._finished:
                self._finish_seen.set()

    @contextmanager
    def serving(self) -> Iterator[None]:
        deadline = time.monotonic() + QUIET_WAIT
        while True:
            self._quiet.wait(max(0.0, deadline - time.monotonic()))
            self._serving.acquire()
            if self._quiet.is_set() or time.monotonic() >= deadline:
                break
            self._serving.release()  # a hunt started meanwhile: wait for it again
        try:
            yield
        finally:
            self._serving.release()

    def finished(self, report: dict[str, Any] | None, reports: Sequence[str]) -> None:
        with self._lock:
            self._report = report if report is not None else self._report
            self._reports = [path for path in reports if path]
            self._finished = True
            self._current = None

    # -- read by the server ------------------------------------------------------------------------------------
    def _done_tests(self) -> list[dict[str, Any]]:
        """Copies of the entries of the tests whose teardown was reported (hold ``_lock``): a running test is
        counted once it is done, so the headline and the progress agree."""
        return [dict(entry) for nodeid, entry in self._recorder.entries.items() if nodeid in self._done]

    def _packages(self) -> dict[str, Any]:
        loader = self._source.loader() if isinstance(self._source, LiveSource) else self._source
        if isinstance(loader, LazyLoader):
            packages, histories = package_snapshot(loader)
        else:
            packages = {name: info for name in self._source.package_names()
                        if (info := self._source.get_package_memory_info(name)) is not None}
            histories = {}
        return {"summary": self._source.get_memory_usage_summary(),
                "leaks": self._source.get_memory_leaks_report(self._threshold),
                "packages": packages, "package_histories": histories}

    def model(self) -> dict[str, Any]:
        with self._lock:
            if self._report is not None:
                return self._report
            tests = self._done_tests()
        return {"run": {"started": self._started}, "tests": tests, **self._packages()}

    def payload(self) -> dict[str, Any]:
        with self._lock:
            report, finished, total, current = self._report, self._finished, self._total, self._current
            reports, done = list(self._reports), len(self._done)
            tests = self._done_tests() if report is None else None
        model = report if report is not None else {"run": {"started": self._started}, "tests": tests}
        return session_payload(model, live=True, finished=finished, total=total, current=current, reports=reports,
                               updated=time.time(), done=None if report is not None else done)


    def linger(self, watching: float = 5.0, poll: float = 2.5) -> bool:
        """At the end of the session, before the server stops: when a dashboard page was answered within
        ``watching`` seconds (an open one polls every 2 s), keep serving for ``poll`` seconds, so every open page
        gets to show the verdict and the reports' paths instead of a lost connection. True when a page was told
        the session finished."""
        with self._lock:
            watched = time.time() - self._watched <= watching
        if watched:
            time.sleep(poll)
        return self._finish_seen.is_set()


class ProgressHooks:
    """pytest hooks that keep a :class:`LiveSession` up to date (registered with the live server)."""

    def __init__(self, session: LiveSession, config: pytest.Config) -> None:
        self.session = session
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.session.collected(len(session.items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        self.session.collected(len(ids))  # every worker collects the whole suite

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        session = self.config.pluginmanager.get_plugin("memtrack-session")
        try:
            hunted = session is not None and session.limit_for(item) is not None
        except Exception:  # a bad marker: the session fails that test, it is not hunted
            hunted = False
        self.session.hunting(hunted)
        try:
            return (yield)
        finally:
            self.session.hunting(False)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.session.test_started(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.test_logged(report)

    @pytest.hookimpl(trylast=True)
    def pytest_memtrack_report_ready(self, session: pytest.Session, report: dict[str, Any]) -> None:
        self.session.finished(report, self._report_paths())

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.session.finished(None, self._report_paths())  # no report (its building failed): still finished

    def _report_paths(self) -> list[str]:
        manager = self.config.pluginmanager
        settings = getattr(manager.get_plugin("memtrack-session"), "settings", None)
        html = manager.get_plugin("memtrack-html")
        return [str(p) for p in (getattr(settings, "json_path", None), getattr(html, "path", None)) if p]
