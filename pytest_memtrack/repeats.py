"""Keeping a hunt's repeats of a test out of pytest's books.

The hunt runs a test's protocol with ``log=False``, so its setup/call/teardown reports are never logged. Reports
that a test logs *itself* are: a ``subTest`` of a unittest test or the ``subtests`` fixture logs one report per
subtest through ``pytest_runtest_logreport`` as it goes. Logged from every repeat, they would be counted (the
summary's "subtests passed" multiplied by the number of runs), printed, written to JUnit XML, and kept by the
terminal reporter for the whole session — megabytes for a test with a thousand subtests, which the hunt's own
readings then see as the test's growth. While the repeats run, such reports for that test are dropped before any
plugin sees them, and pytest's count of the test's failed subtests is put back afterwards.

Nor do hook-call monitors see the repeats' hook calls. pytester's ``HookRecorder`` (an in-process pytester run)
keeps every call it sees, with its arguments, until the run ends: for a test with 300 subtests, 300 records (each
with its ``CallInfo``) a repeat. That is per-run state of the harness, which the readings ought not to see, and
on CPython 3.13 they did: the records' small dicts take their key tables from the interpreter's free list, which
hands out again the blocks the test's code just freed (the ``**params`` dict of every ``subTest``), and
tracemalloc attributes a block to its first allocation, so the harness's records read as ~30 KiB/run of the test's
growth at ``contextlib.py``.

Also here: which runs the hunt can repeat (``clean_pass``), and the teardown the hunt defers (``finish_teardown``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

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
    manager = config.pluginmanager
    inner = getattr(manager, "_inner_hookexec", None)
    unmonitored = _beneath_monitors(inner)
    failed = _failed_subtests(config)  # keyed by pytest's structured node ids: kept and put back whole
    failed_before = dict(failed) if failed is not None else None

    def hookexec(hook_name: str, hook_impls: Any, caller_kwargs: dict[str, Any], firstresult: bool) -> Any:
        if hook_name in _DROPPED_HOOKS and getattr(caller_kwargs.get("report"), "nodeid", None) == nodeid:
            return None if firstresult else []
        return unmonitored(hook_name, hook_impls, caller_kwargs, firstresult)  # type: ignore[misc]

    if inner is not None:
        manager._inner_hookexec = hookexec  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if inner is not None and getattr(manager, "_inner_hookexec", None) is hookexec:
            manager._inner_hookexec = inner  # type: ignore[attr-defined]
        if failed is not None and failed_before is not None:
            failed.clear()
            failed.update(failed_before)


def clean_pass(reports: list[pytest.TestReport]) -> bool:
    """Every phase ran and passed (not skipped, not an expected failure): a run the hunt can repeat."""
    return len(reports) == 3 and all(r.passed for r in reports) and not any(hasattr(r, "wasxfail") for r in reports)


def _reraised(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """The exceptions a test phase lets through, as pytest's own ``call_runtest_hook`` decides (its helper for
    this, ``get_reraise_exceptions``, is new in pytest 8.4)."""
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
    from _pytest.runner import CallInfo

    capman = item.config.pluginmanager.getplugin("capturemanager")
    capture = getattr(capman, "item_capture", None)
    known = len(item._report_sections)

    def teardown() -> None:
        if capture is None:
            item.session._setupstate.teardown_exact(nextitem)
            return
        with capture("teardown", item):
            item.session._setupstate.teardown_exact(nextitem)

    call = CallInfo.from_call(teardown, when="teardown", reraise=_reraised(item.config))
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
