"""How a hunted test runs inside pytest: its marker, its reported run, its unreported repeats and its teardown.

The one adapter to pytest's and pluggy's internals (checked on pytest 7.4 to 9.2, pluggy 1.1 to 1.6): the test
protocol without logging (``_pytest.runner.runtestprotocol``), the item's captured sections
(``item._report_sections``), the session's setup state (``session._setupstate``), pluggy's hook execution
(``PluginManager._inner_hookexec``), pytest 9's failed-subtests count and ``get_reraise_exceptions`` (pytest 9.0),
the finalizer lists of fixture definitions (``FixtureDef._finalizers``, ``item._fixtureinfo``).
Everything else of the plugin uses pytest's public API.

Reports of the repeats are kept out of pytest's books: the hunt runs a test's protocol with ``log=False``, so its
setup/call/teardown reports are never logged. Reports that a test logs *itself* are: a ``subTest`` of a unittest
test or the ``subtests`` fixture logs one report per subtest through ``pytest_runtest_logreport`` as it goes.
Logged from every repeat, they would be counted (the summary's "subtests passed" multiplied by the number of
runs), printed, written to JUnit XML, and kept by the terminal reporter for the whole session — megabytes for a
test with a thousand subtests, which the hunt's own readings then see as the test's growth. While the repeats run,
such reports for that test are dropped before any plugin sees them, and pytest's count of the test's failed
subtests is put back afterwards.

Nor do hook-call monitors see the repeats' hook calls. pytester's ``HookRecorder`` (an in-process pytester run)
keeps every call it sees, with its arguments, until the run ends: for a test with 300 subtests, 300 records (each
with its ``CallInfo``) a repeat. That is per-run state of the harness, which the readings ought not to see, and
on CPython 3.13 they did: the records' small dicts take their key tables from the interpreter's free list, which
hands out again the blocks the test's code just freed (the ``**params`` dict of every ``subTest``), and
tracemalloc attributes a block to its first allocation, so the harness's records read as ~30 KiB/run of the test's
growth at ``contextlib.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_memtrack.tracking.tracing import tracemalloc

if TYPE_CHECKING:  # the hunt's modules are imported by the first hunt (``run_hunted``): not at start-up
    from pytest_memtrack.hunt.verdict import HuntParameters, HuntResult

MARKER = "max_leak_score"
SKIP_MARKER = "memtrack_skip"


class MarkerError(Exception):
    """A malformed ``max_leak_score`` marker: fails that test, never the run."""


def marker_limit(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> float:
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


#: Hooks whose calls carry a ``report`` of the repeated test and must not reach any plugin during repeats.
_DROPPED_HOOKS = frozenset({"pytest_runtest_logreport", "pytest_exception_interact"})


def _failed_subtests(config: pytest.Config) -> dict[Any, int] | None:
    try:
        from _pytest.subtests import failed_subtests_key  # pytest >= 9
    except ImportError:
        return None
    return config.stash.get(failed_subtests_key, None)


def _beneath_monitors(hookexec: Any) -> Any:
    """The hook executor beneath pluggy's hook-call monitors (``PluginManager.add_hookcall_monitoring``: pytester's
    ``HookRecorder``, ``--debug`` tracing), which wrap the executor to see every call. The descent stops at any
    other wrapper, which is kept, and wherever pluggy's monitor does not look as expected."""
    while getattr(hookexec, "__qualname__", "").endswith(".add_hookcall_monitoring.<locals>.traced_hookexec"):
        try:
            hookexec = hookexec.__closure__[hookexec.__code__.co_freevars.index("oldcall")].cell_contents
        except (AttributeError, IndexError, TypeError, ValueError):
            break
    return hookexec


@contextmanager
def repeats_unreported(config: pytest.Config, nodeid: str) -> Iterator[None]:
    """While the block runs, reports of ``nodeid`` logged by the test itself reach no plugin.

    Done at pluggy's hook execution, the one place every hook call passes (``PluginManager._inner_hookexec``,
    which pluggy's own call tracing also wraps); where that is missing, nothing is filtered. The calls that go on
    skip the hook-call monitors (``_beneath_monitors``)."""
    manager: Any = config.pluginmanager
    inner: Any = getattr(manager, "_inner_hookexec", None)
    unmonitored = _beneath_monitors(inner)
    failed = _failed_subtests(config)  # keyed by pytest's structured node ids: kept and put back whole
    failed_before = dict(failed) if failed is not None else None

    def hookexec(hook_name: str, hook_impls: Any, caller_kwargs: dict[str, Any], firstresult: bool) -> Any:
        if hook_name in _DROPPED_HOOKS and getattr(caller_kwargs.get("report"), "nodeid", None) == nodeid:
            return None if firstresult else []
        return unmonitored(hook_name, hook_impls, caller_kwargs, firstresult)

    if inner is not None:  # where pluggy has no such hook execution, nothing is filtered
        manager._inner_hookexec = hookexec
    try:
        yield
    finally:
        if inner is not None and getattr(manager, "_inner_hookexec", None) is hookexec:
            manager._inner_hookexec = inner
        if failed is not None and failed_before is not None:
            failed.clear()
            failed.update(failed_before)


def _wider_fixturedefs(item: pytest.Item) -> list[Any]:
    """The definitions of the fixtures ``item`` uses whose scope is wider than the function's, with the list of
    finalizers pytest keeps on each until that fixture is torn down."""
    closure = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", None) or {}
    return [fixturedef for fixturedefs in closure.values() for fixturedef in fixturedefs
            if getattr(fixturedef, "scope", "function") != "function"
            and isinstance(getattr(fixturedef, "_finalizers", None), list)]


def _finishes_a_function_fixture_of(finalizer: object, item: pytest.Item) -> bool:
    """Whether ``finalizer`` is pytest's ``functools.partial(fixturedef.finish, request=request)`` for a
    function-scoped fixture of ``item``: each setup of such a fixture registers one on every wider fixture it
    requested (``tmp_path`` on the session's ``tmp_path_factory``), kept with its request until that wider fixture
    is torn down — the end of the session. By then the function-scoped fixture was finished at its own teardown."""
    if not isinstance(finalizer, functools.partial) or set(finalizer.keywords) != {"request"}:
        return False
    finish = finalizer.func
    return (getattr(finish, "__name__", "") == "finish" and getattr(getattr(finish, "__self__", None), "scope", "")
            == "function" and getattr(finalizer.keywords["request"], "_pyfuncitem", None) is item)


def repeats_finalizers_forgotten(item: pytest.Item) -> Callable[[], None]:
    """A function to call after each repeat of ``item``: it drops the finalizers the repeat's function-scoped
    fixtures left on wider fixtures (``_finishes_a_function_fixture_of``), as those already ran.

    Each kept a fixture request, its ``TopRequest`` and their dicts (~30 objects) until the end of the session: per
    repeat, the screen read it as growth of every test that uses ``tmp_path`` (the traced hunt then found the growth
    pytest's, after ~0.3 s), and a session that hunts every test kept five sets per such test. The reported run's
    own stays, as without the plugin. Nothing else on those lists is touched."""
    wider = _wider_fixturedefs(item)
    lengths = [len(fixturedef._finalizers) for fixturedef in wider]

    def forget() -> None:
        for fixturedef, length in zip(wider, lengths):
            finalizers = fixturedef._finalizers
            if len(finalizers) > length:
                finalizers[length:] = [finalizer for finalizer in finalizers[length:]
                                       if not _finishes_a_function_fixture_of(finalizer, item)]
    return forget


def clean_pass(reports: list[pytest.TestReport]) -> bool:
    """Every phase ran and passed (not skipped, not an expected failure): a run the hunt can repeat."""
    return len(reports) == 3 and all(r.passed for r in reports) and not any(hasattr(r, "wasxfail") for r in reports)


def _reraised(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """The exceptions a test phase lets through, as pytest's own ``call_runtest_hook`` decides (its helper for
    this, ``get_reraise_exceptions``, is new in pytest 9.0)."""
    try:
        from _pytest.runner import get_reraise_exceptions
    except ImportError:
        return (pytest.exit.Exception,) + (() if config.getoption("usepdb", False) else (KeyboardInterrupt,))
    return tuple(get_reraise_exceptions(config))


def finish_teardown(item: pytest.Item, report: pytest.TestReport, nextitem: pytest.Item | None) -> pytest.TestReport:
    """Tear down what ``nextitem`` does not share (the hunt kept the test's wider fixtures up) and fold the
    outcome into the reported teardown ``report``, as pytest's own teardown towards ``nextitem`` would have.

    Only the setup state is torn down here, not the ``pytest_runtest_teardown`` hooks again: plugins pair
    those with one setup (the logging plugin deletes what its setup stored).
    """
    capman = item.config.pluginmanager.getplugin("capturemanager")
    capture = getattr(capman, "item_capture", None)
    known = len(item._report_sections)

    def teardown() -> None:
        if capture is None:
            item.session._setupstate.teardown_exact(nextitem)
            return
        with capture("teardown", item):
            item.session._setupstate.teardown_exact(nextitem)

    call = pytest.CallInfo.from_call(teardown, when="teardown", reraise=_reraised(item.config))
    if call.excinfo is None:
        report.duration += call.duration
        report.sections.extend((f"Captured {key} {when}", content)
                               for when, key, content in item._report_sections[known:] if content)
        return report
    failed: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if not report.passed:
        return report  # the function-scoped teardown failed first: pytest would report that one
    failed.duration += report.duration
    failed.start = report.start
    return failed


def limit_for(item: pytest.Item, default: float | None) -> float | None:
    """The leak limit for ``item`` (None: not hunted): its marker's, else ``default`` unless the test opted out.
    Raises ``MarkerError`` for a bad marker."""
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        return marker_limit(marker.args, marker.kwargs)
    if item.get_closest_marker(SKIP_MARKER) is not None:
        return None
    return default


@dataclass
class HuntedRun:
    """The reported run of a hunted test (its teardown folded in) and the hunt's result: None when the test was
    not hunted (its run did not pass cleanly, the session is stopping) or the hunt itself failed."""

    reports: list[pytest.TestReport]
    result: HuntResult | None


def run_hunted(item: pytest.Item, nextitem: pytest.Item | None, params: HuntParameters, *, root: str,
               after_reported_run: Callable[[], None], hunting: Callable[[bool], None],
               problems: list[str]) -> HuntedRun:
    """Run the protocol of ``item`` once for real, then repeat it unreported (wider fixtures kept up).

    The reported run comes first, so the test's outcome is that of its first execution, as without the
    plugin: a test that is not idempotent (it pops from a module-level dict, a library caches what it warned
    about) fails when repeated, which ends the hunt and changes nothing else. Its teardown stops at the
    test's parent; the rest of the teardown towards ``nextitem`` (module- or class-scoped fixtures the next
    test does not share) runs after the hunt and is folded into the reported teardown. Nothing is logged here.
    """
    from _pytest.runner import runtestprotocol

    from pytest_memtrack.hunt import caches, runner, screen
    from pytest_memtrack.hunt.readings import TRACE_FRAMES

    # Tearing down "to the item's parent" finalizes the function-scoped fixtures only, so every repeat
    # sets them up afresh while module-, class- and session-scoped ones stay up.
    keep_up = item.parent

    forget_finalizers: Callable[[], None] = lambda: None  # noqa: E731  (set after the reported run)
    sections: list[Any] = []  # the reported run's captured output sections and properties (set after it)
    properties: list[Any] = []

    def run_once() -> bool:
        passed = clean_pass(runtestprotocol(item, nextitem=keep_up, log=False))  # type: ignore[arg-type]
        forget_finalizers()
        # Each repeat appends its captured output (and record_property entries) to the item, which pytest keeps
        # for the reported teardown: dropped after each repeat, as they are after the hunt. Kept, a test that
        # prints read as growing by its output every run and took the full traced hunt (pyparsing's suite: 14 of
        # its 15 subTest tests, 14x the plain run).
        del item._report_sections[len(sections):]
        del item.user_properties[len(properties):]
        return passed

    # Screened (``screen``) unless something else traces: the reported run and the screen's runs untraced, then
    # only a test that kept something is hunted under tracing, with warm-ups of its own.
    screening = params.screen and screen.SCREENS and not tracemalloc.is_tracing()
    # Else traced from the reported run on, as the hunt traces its warm-ups: what the first run puts in a bounded
    # cache is then traced too, and its eviction during the hunt shows as a free instead of hiding one.
    started_tracing = not screening and not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(TRACE_FRAMES)
    result = None
    try:
        reports = runtestprotocol(item, nextitem=keep_up, log=False)  # type: ignore[arg-type]
        after_reported_run()
        if clean_pass(reports) and not (item.session.shouldfail or item.session.shouldstop):
            # What the repeats add to the item (captured output sections, record_property entries) is
            # theirs: the reported teardown and the JUnit XML show the reported run's only.
            sections[:], properties[:] = item._report_sections, item.user_properties
            forget_finalizers = repeats_finalizers_forgotten(item)
            hunting(True)
            patterns = caches.regex_caches()
            try:
                with repeats_unreported(item.config, item.nodeid):
                    if screening:
                        result = screen.screened_hunt(run_once, params, root=root)
                    else:
                        result = runner.hunt(run_once, params, root=root, owns_tracing=started_tracing)
            except Exception as exc:  # our own failure must not fail the user's test
                problems.append(f"leak hunt of {item.nodeid} failed: {type(exc).__name__}: {exc}")
            finally:
                caches.restore_regex_caches(patterns)  # after the last reading: nothing of it is measured
                hunting(False)
                item._report_sections[:] = sections
                item.user_properties[:] = properties
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
            started_tracing = False
        if item.session.shouldfail or item.session.shouldstop:
            nextitem = None
        reports[-1] = finish_teardown(item, reports[-1], nextitem)
    finally:
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
    return HuntedRun(reports, result)
