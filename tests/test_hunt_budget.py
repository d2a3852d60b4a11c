"""The time budget of a leak hunt (--memtrack-hunt-budget): the repeats of one test stop when it runs out, the
verdict uses what was measured, the user is told, and the budget alone never fails a test."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pytest_memtrack.hunt import runner as hunting
from pytest_memtrack.hunt.screen import SCREENS

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_PLUGINS, *args)


SLOW = """
import time
import pytest

@pytest.mark.max_leak_score(0.1)
def test_slow():
    time.sleep(0.3)
"""

#: Slow from its 5th run (the 4th of the hunt): with a budget of 1.8 s the 2 warm-ups and the first measured run
#: end within it, the second measured run ends past it, and the two measured readings show the leak (one alone
#: could not: it scores 0).
SLOW_LEAK = """
import time
import pytest
KEPT = []

@pytest.mark.max_leak_score(0.1)
def test_slow_leak():
    KEPT.append(bytes(100_000))
    if len(KEPT) >= 5:
        time.sleep(2.0)
"""

#: Slow from its 3rd run: with one warm-up, the first measured run ends past a budget of 0.5 s.
SLOW_FROM_THE_FIRST_MEASURED_RUN = """
import time
import pytest
CALLS = []

@pytest.mark.max_leak_score(0.1)
def test_slow():
    CALLS.append(None)
    if len(CALLS) >= 3:
        time.sleep(0.6)
"""


class FakeClock:
    """A clock that each run of the test moves on by ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now

    def run(self, keep: list[bytes] | None = None):
        def run_once() -> bool:
            self.now += self.step
            if keep is not None:
                _kept_by(keep)
            return True
        return run_once


def _kept_by(keep: list[bytes]) -> None:
    # The hunt counts an allocation as the test's when no frame of its own is among the traced frames: allocated
    # three calls below the hunt's, as a real test's are.
    _allocate(keep)


def _allocate(keep: list[bytes]) -> None:
    keep.append(bytes(100_000))


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """For the in-process runs of ``pytester.runpytest``: time passes for the hunt's budget only when a test sleeps,
    and sleeping does not wait. ``time.sleep`` on the main thread (where tests run) moves the clock the hunt reads
    (``hunt.budget_clock``) on; elsewhere (xdist's and the plugin's threads) it sleeps as usual. The verdicts are
    then those of a machine on which the runs themselves take no time: deterministic, and no real waiting."""
    clock = FakeClock(0.0)
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            clock.now += seconds
        else:
            real_sleep(seconds)

    monkeypatch.setattr(hunting, "budget_clock", clock)
    monkeypatch.setattr(time, "sleep", sleep)
    return clock


# ---------------------------------------------------------------------------------------------------- hunt() itself


def test_a_budget_that_runs_out_during_the_warm_ups_gives_no_verdict():
    clock = FakeClock(1.0)
    params = hunting.HuntParameters(time_budget=1.5)
    with pytest.warns(hunting.HuntBudgetWarning, match="--memtrack-hunt-budget"):
        result = hunting.hunt(clock.run(), params, clock=clock)
    assert result.runs == 2 and result.readings == [] and result.score == 0 and not result.leaking
    assert result.budget_stop
    assert "no leak verdict" in result.error and "1.5 s" in result.error and "raise --memtrack-hunt-budget" in result.error


@pytest.mark.slow
def test_a_budget_that_runs_out_after_measured_runs_judges_on_them():
    clock = FakeClock(1.0)
    kept: list[bytes] = []
    params = hunting.HuntParameters(time_budget=4.5)
    with pytest.warns(hunting.HuntBudgetWarning, match="stopped at its time budget"):
        result = hunting.hunt(clock.run(kept), params, clock=clock)
    assert result.runs == 5 and len(result.readings) == 4  # 2 warm-ups, baseline, 3 measured
    assert result.leaking and result.kinds["memory"].leaking
    assert "after 5 repeated runs" in result.error and "2 warm-up, 3 measured" in result.error


@pytest.mark.slow
def test_two_measured_runs_are_no_verdict_of_leaking():
    """Two growing steps are no pattern (the leak score needs three): a budget that ends the hunt there acquits."""
    clock = FakeClock(1.0)
    kept: list[bytes] = []
    with pytest.warns(hunting.HuntBudgetWarning, match="stopped at its time budget"):
        result = hunting.hunt(clock.run(kept), hunting.HuntParameters(time_budget=3.5), clock=clock)
    assert len(result.readings) == 3 and not result.leaking


@pytest.mark.parametrize("budget", [None, 0])
def test_no_budget_runs_as_before(budget, recwarn):
    clock = FakeClock(1000.0)
    result = hunting.hunt(clock.run(), hunting.HuntParameters(time_budget=budget), clock=clock)
    assert result.error is None and not result.budget_stop and len(result.readings) >= 4
    assert not [w for w in recwarn if issubclass(w.category, hunting.HuntBudgetWarning)]


@pytest.mark.slow
def test_a_budget_reached_on_the_last_allowed_run_is_no_stop():
    clock = FakeClock(1.0)
    kept: list[bytes] = []
    params = hunting.HuntParameters(time_budget=4.5, max_runs=5)
    result = hunting.hunt(clock.run(kept), params, clock=clock)
    assert result.runs == 5 and result.error is None and not result.budget_stop


def test_an_error_filter_shows_the_budget_warning_instead_of_raising_it():
    clock = FakeClock(1.0)
    with pytest.warns(hunting.HuntBudgetWarning):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = hunting.hunt(clock.run(), hunting.HuntParameters(time_budget=0.5), clock=clock)
    assert result.budget_stop


# ------------------------------------------------------------------------------------------------ as users run it


# The real clock once, end to end (about a second: the reported run and two warm-ups of 0.3 s); the fake one for the
# rest.
@pytest.mark.parametrize("clock", ["fake", pytest.param("real", marks=pytest.mark.slow)])
def test_a_slow_test_stops_at_the_budget_with_a_note_and_passes(pytester, request, clock):
    if clock == "fake":
        request.getfixturevalue("fake_time")
    pytester.makepyfile(test_app=SLOW)
    result = run(pytester, "--memtrack", "--memtrack-hunt-budget=0.5", "--memtrack-json=report.json")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*warnings summary*",
        "test_app.py::test_slow",
        "*HuntBudgetWarning: memtrack: no leak verdict: the hunt ran out of its time budget of 0.5 s "
        "(--memtrack-hunt-budget*",
    ])
    test = json.loads((pytester.path / "report.json").read_text())["tests"][0]
    assert test["outcome"] == "passed" and test["leak_score"] == 0 and not test["leaking"]
    assert test["hunt"]["runs"] <= 3 and "--memtrack-hunt-budget" in test["hunt"]["error"]  # reported + warm-ups


@pytest.mark.slow
def test_a_slow_test_with_a_measured_run_is_judged_on_it_and_passes(pytester, fake_time):
    pytester.makepyfile(test_app=SLOW_FROM_THE_FIRST_MEASURED_RUN)
    result = run(pytester, "--memtrack", "--memtrack-hunt-budget=0.5", "--memtrack-warmup-runs=1",
                 "--memtrack-trace-hunts")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*HuntBudgetWarning: memtrack: the hunt stopped at its time budget of 0.5 s*"
                                 "after 2 repeated runs*1 warm-up, 1 measured*"])


@pytest.mark.slow
@pytest.mark.skipif(not SCREENS, reason="no screen on CPython 3.10: the traced hunt runs (screen.SCREENS)")
def test_a_screen_that_runs_out_of_the_budget_gives_no_verdict_and_passes(pytester, fake_time):
    """The untraced screen's readings are upper bounds, which can acquit but never convict: a screen cut short by
    the budget before it could pass the test gives no verdict, says so, and the test passes."""
    pytester.makepyfile(test_app=SLOW_LEAK)
    result = run(pytester, "--memtrack", "--memtrack-hunt-budget=1.5", "--memtrack-json=report.json")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*HuntBudgetWarning: memtrack: no leak verdict: the hunt ran out of its time "
                                 "budget of 1.5 s*untraced screen*"])
    hunt = json.loads((pytester.path / "report.json").read_text())["tests"][0]["hunt"]
    assert hunt["screen"]["passed"] is False and hunt["readings"] == [] and hunt["screen"]["runs"] == 4


@pytest.mark.slow
def test_a_leak_seen_within_the_budget_still_fails_with_the_note(pytester, fake_time):
    pytester.makepyfile(test_app=SLOW_LEAK)
    result = run(pytester, "--memtrack", "--memtrack-hunt-budget=2.8", "-rf", "--memtrack-trace-hunts")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "memtrack: test_app.py:* leaks * a run (score *",
        "*LEAK Python memory (tracemalloc)*",
        "*note: the hunt stopped at its time budget of 2.8 s*",  # wrapped to the terminal's width
        "*2 warm-up, 3 measured*",
    ])


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf"])
def test_a_bad_budget_is_a_usage_error_naming_the_option(pytester, value):
    pytester.makepyfile(test_app=SLOW)
    result = run(pytester, "--memtrack", f"--memtrack-hunt-budget={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--memtrack-hunt-budget must be a number of seconds*not '{value}'.*"])


def test_a_bad_ini_budget_is_a_usage_error_naming_the_key(pytester):
    pytester.makeini("[pytest]\nmemtrack_hunt_budget = soon\n")
    pytester.makepyfile(test_app=SLOW)
    result = run(pytester, "--memtrack")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option 'memtrack_hunt_budget' must be a number of seconds*'soon'*"])


def test_zero_means_no_limit(pytester, fake_time):
    pytester.makepyfile(test_app=SLOW.replace("0.3", "0.05"))
    pytester.makeini("[pytest]\nmemtrack_hunt_budget = 0.01\n")  # the command line wins over the ini
    result = run(pytester, "--memtrack", "--memtrack-hunt-budget=0", "--memtrack-json=report.json")
    result.assert_outcomes(passed=1)
    assert "HuntBudgetWarning" not in result.stdout.str()
    hunt = json.loads((pytester.path / "report.json").read_text())["tests"][0]["hunt"]
    assert hunt["error"] is None and hunt["runs"] >= 4  # the reported run and at least 3 repeats: a full screen
