"""Regressions found by running real third-party suites under the plugin: it must never change a suite's outcome
(unless a memory limit is broken), crash, or write a report that does not validate."""

from __future__ import annotations

import json
import re

import pytest

from pytest_memtrack.schemas import validate

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_PLUGINS, *args)


def test_xfail_and_xpass_outcomes_are_in_a_valid_report(pytester):
    # attrs and click mark tests xfail: the report said "xfailed", which the schema did not allow.
    pytester.makepyfile("""
        import pytest
        @pytest.mark.xfail
        def test_xfailed():
            assert False
        @pytest.mark.xfail
        def test_xpassed():
            pass
        @pytest.mark.xfail(strict=True)
        def test_xpassed_strict():
            pass
        def test_skipped():
            pytest.skip("no")
        def test_imperative_xfail():
            pytest.xfail("later")
    """)
    result = run(pytester, "--memtrack", "--memtrack-json=r.json", "--memtrack-max-leak-score=1.0")
    result.assert_outcomes(xfailed=2, xpassed=1, failed=1, skipped=1)
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {"test_xfailed": "xfailed", "test_xpassed": "xpassed", "test_xpassed_strict": "failed",
                        "test_skipped": "skipped", "test_imperative_xfail": "xfailed"}


def test_a_warning_at_import_is_attributed_to_the_importer_not_to_the_import_observer(pytester):
    # python-dateutil's test_imports: a module warning at import with a stacklevel that names its importer. The
    # observer's wrapper around exec_module sat between, so the warning named pytest_memtrack/imports.py, and a
    # filterwarnings entry for the importing module no longer matched it (an "error" filter then failed the test).
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    ignore:old module:DeprecationWarning:test_app\n")
    pkg = pytester.mkpydir("mt_deprecated_pkg")
    pkg.joinpath("__init__.py").write_text("import warnings\nwarnings.warn('old module', DeprecationWarning, stacklevel=2)\n")
    pkg.joinpath("other.py").write_text("import warnings\nwarnings.warn('other', DeprecationWarning, stacklevel=2)\n")
    pytester.makepyfile(test_app="""
        import pytest
        def test_ignored_for_this_module():
            import mt_deprecated_pkg
        def test_named_at_the_import_statement():
            with pytest.warns(DeprecationWarning, match="other") as record:
                import mt_deprecated_pkg.other
            assert [w.filename for w in record] == [__file__]
    """)
    for args in ((), ("--memtrack",)):
        result = run(pytester, *args)
        result.assert_outcomes(passed=2)


@pytest.mark.slow
def test_a_hunted_test_that_cannot_run_twice_keeps_the_outcome_of_its_first_run(pytester):
    # python-dateutil: test_import_star pops from a module-level dict, test_tzstr_internal_timedeltas expects a
    # warning that tzstr's instance cache gives only once. Hunted, their reported run came last and failed.
    pytester.makepyfile(test_app="""
        import pytest, warnings
        NAMES = {"a": 1}
        SEEN = set()
        def test_pops():
            assert NAMES.pop("a") == 1
        def test_warns_once():
            with pytest.warns(UserWarning):
                if "x" not in SEEN:
                    SEEN.add("x")
                    warnings.warn("first time", UserWarning)
        @pytest.fixture
        def printer():
            print("setup output")
            yield
        def test_output(printer, record_property):
            record_property("answer", 42)
            print("call output")
    """)
    result = run(pytester, "--memtrack", "--memtrack-max-leak-score=1.0", "--junitxml=junit.xml", "-o", "junit_family=legacy", "-rP",
                 "--memtrack-json=r.json")
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("call output") == 1  # the hunt's repeats are not reported
    assert (pytester.path / "junit.xml").read_text().count('name="answer"') == 1
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    assert all(t["hunt"] is not None for t in report["tests"]), report["tests"]


def test_wider_fixtures_are_torn_down_once_after_the_hunt_and_their_teardown_error_is_reported(pytester):
    pytester.makepyfile(test_app="""
        import pytest
        EVENTS = []
        @pytest.fixture(scope="module")
        def resource():
            EVENTS.append("setup")
            yield
            EVENTS.append("teardown")
            raise RuntimeError("module teardown failed")
        def test_one(resource):
            pass
        def test_two(resource):
            pass
        def test_after_module():
            pass
    """, test_z="""
        import test_app
        def test_events():
            assert test_app.EVENTS == ["setup", "teardown"]
    """)
    plain = run(pytester)
    plain.assert_outcomes(passed=4, errors=1)
    plain.stdout.fnmatch_lines(["*ERROR at teardown of test_after_module*"])
    hunted = run(pytester, "--memtrack", "--memtrack-max-leak-score=1.0")
    hunted.assert_outcomes(passed=4, errors=1)
    hunted.stdout.fnmatch_lines(["*ERROR at teardown of test_after_module*", "*RuntimeError: module teardown failed*"])


@pytest.mark.slow
def test_subtests_of_the_hunts_repeats_are_not_reported(pytester):
    pytest.importorskip("_pytest.subtests", reason="pytest reports subtests itself from 9.0")
    # more_itertools: every repeat's subTest reports were logged, counted and kept by the terminal reporter
    # (1,099 a run), and the hunt read the reports pytest kept as the test's native growth.
    pytester.makepyfile("""
        import unittest
        import pytest

        class TestCase(unittest.TestCase):
            @pytest.mark.max_leak_score(0.1)
            def test_unittest_subtests(self):
                for i in range(300):
                    with self.subTest(i=i):
                        self.assertGreaterEqual(i, 0)

        @pytest.mark.max_leak_score(0.1)
        def test_fixture_subtests(subtests):
            for i in range(300):
                with subtests.test(msg=f"case {i}"):
                    assert i >= 0

        @pytest.mark.max_leak_score(1.0)
        def test_a_failing_subtest(subtests):
            with subtests.test(msg="fails"):
                assert False
    """)
    def summary(result: pytest.RunResult) -> str:
        return re.sub(r" in [0-9.]+s.*", "", result.stdout.lines[-1]).strip("= ")

    plain = summary(run(pytester, "-v"))
    hunted = run(pytester, "-v", "--memtrack", "--memtrack-json=r.json", "--junitxml=j.xml")
    assert summary(hunted) == plain and "600 subtests passed" in plain
    assert "contains 1 failed subtest" in hunted.stdout.str()
    report = json.loads((pytester.path / "r.json").read_text())
    hunts = {t["nodeid"].split("::")[-1]: t["hunt"] for t in report["tests"]}
    assert hunts["test_unittest_subtests"]["runs"] >= 4 and hunts["test_fixture_subtests"]["runs"] >= 4
    assert not any(t["leaking"] for t in report["tests"])
    assert (pytester.path / "j.xml").read_text().count('name="test_fixture_subtests"') == 1


def test_the_hunts_repeats_are_not_recorded_by_hook_call_monitors(pytester):
    # pytester's HookRecorder kept a record of every hook call of every repeat (the item, its CallInfo) until the
    # run ended: per-run state of the harness, which on CPython 3.13 the hunt read as the test's own growth (the
    # records' dicts reused blocks the test had freed; test_subtests_of_the_hunts_repeats_are_not_reported).
    pytester.makepyfile("""
        import pytest

        @pytest.mark.max_leak_score(1.0)
        def test_hunted():
            pass
    """)
    def makereport_calls(*args: str) -> list[str]:
        recorder = pytester.inline_run(*NO_PLUGINS, *args)
        return [call.call.when for call in recorder.getcalls("pytest_runtest_makereport")]

    plain = makereport_calls()
    hunted = makereport_calls("--memtrack", "--memtrack-json=r.json")
    assert plain == ["setup", "call", "teardown"]
    assert hunted == plain
    assert json.loads((pytester.path / "r.json").read_text())["tests"][0]["hunt"]["runs"] >= 4


def test_the_suites_own_packages_are_not_tracked_as_the_projects(pytester):
    # click: tests/test_utils/__init__.py made "test_utils" a tracked package in the report.
    pytester.makepyfile(**{
        "mypkg/__init__.py": "STATE = [bytes(1000) for _ in range(10)]\n",
        "mypkg/tests/__init__.py": "",
        "mypkg/tests/test_inside.py": "def test_inside():\n    import mypkg\n    assert mypkg.STATE\n",
        "tests/__init__.py": "",
        "tests/unit/__init__.py": "",
        "tests/unit/test_outside.py": "import mypkg\ndef test_outside():\n    assert mypkg.STATE\n",
    })
    result = run(pytester, "--memtrack", "--memtrack-json=r.json", "--memtrack-check-interval=0")
    result.assert_outcomes(passed=2)
    packages = set(json.loads((pytester.path / "r.json").read_text())["packages"])
    assert "mypkg" in packages
    assert "tests" not in packages


def test_hunts_that_could_not_be_completed_are_noted_in_the_summary(pytester):
    pytester.makepyfile("""
        import pytest
        STATE = {"first": True}

        @pytest.mark.max_leak_score(0.1)
        def test_only_once():
            assert STATE.pop("first")
    """)
    result = run(pytester, "--memtrack")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["note test_hunts_that_could_not_be_completed_are_noted_in_the_summary.py::"
                                 "test_only_once", "  the test failed when repeated*"])


def test_tracing_a_module_starts_at_its_import_is_left_on(pytester):
    # The import observer traces each outermost import and stopped tracing after it, also when the imported
    # module had started tracing for itself.
    pytester.makepyfile(**{
        "selftracing.py": "import tracemalloc\ntracemalloc.start(25)\n",
        "test_it.py": """
            import tracemalloc

            def test_tracing_stays_on():
                original_start = tracemalloc.start
                import selftracing
                assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 25
                assert tracemalloc.start is original_start  # the observer's stand-in is gone again
                tracemalloc.stop()
        """,
    })
    pytester.syspathinsert()
    run(pytester, "--memtrack").assert_outcomes(passed=1)
