"""The plugin as users run it: options, markers, reports, xdist, interruptions."""

from __future__ import annotations

import json
import os
import sys

import pytest

from pytest_memtrack.schemas import validate
from pytest_memtrack.settings import (
    parse_fraction,
    parse_non_negative_float,
    parse_positive_int,
    parse_score,
    parse_size,
    parse_time_budget,
    parse_writable_path,
)

LEAKY = """
import pytest
KEPT = []

@pytest.mark.max_leak_score(0.1)
def test_leaks():
    KEPT.append(bytes(100_000))

@pytest.mark.max_leak_score(0.1)
def test_clean():
    data = [bytes(1000) for _ in range(100)]

def test_plain():
    assert True
"""

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_PLUGINS, *args)


def test_without_memtrack_the_plugin_does_nothing_and_markers_are_registered(pytester):
    pytester.makepyfile(LEAKY)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=3)
    assert "memtrack:" not in result.stdout.str() and "LEAK" not in result.stdout.str()


@pytest.mark.slow
def test_a_leaking_test_fails_with_the_culprit_line_and_a_clean_one_passes(pytester):
    pytester.makepyfile(test_app=LEAKY)
    result = run(pytester, "--memtrack", "-rf")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines([
        "memtrack: test_app.py:6 leaks 9* KiB a run (score 0.* > limit 0.1)",
        "*LEAK Python memory (tracemalloc): 9* KiB per run*",
        "*test_app.py:6: 9* KiB in 1.* blocks*",
        "FAILED test_app.py::test_leaks - memtrack: test_app.py:6 leaks 9*",  # the culprit, cut to 80 columns
    ])


@pytest.mark.slow
def test_the_json_report_validates_and_carries_every_test(pytester):
    pytester.makepyfile(test_app="import mt_project_pkg\n" + LEAKY)
    pytester.mkpydir("mt_project_pkg").joinpath("__init__.py").write_text("from . import sub\n")
    (pytester.path / "mt_project_pkg" / "sub.py").write_text("TABLE = [bytes(1000) for _ in range(300)]\n")
    run(pytester, "--memtrack", "--memtrack-json=out/report.json")
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    validate("report", report)
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert tests["test_leaks"]["leaking"] and tests["test_leaks"]["outcome"] == "failed"
    assert tests["test_clean"]["leak_score"] is not None and not tests["test_clean"]["leaking"]
    assert tests["test_plain"]["leak_score"] is None and tests["test_plain"]["hunt"] is None
    assert tests["test_plain"]["rss_before"] > 0
    assert report["summary"]["total_packages"] == len(report["packages"]) > 0
    project = report["packages"]["mt_project_pkg"]["memory_metrics"]
    assert project["memory_footprint"] > 300_000  # the submodule's import counts for its package
    assert project["current_memory_usage"] > 300_000
    assert "pytest" not in report["packages"] and "json" not in report["packages"]


@pytest.mark.slow
def test_the_default_limit_hunts_every_test_without_a_marker(pytester):
    pytester.makepyfile(test_app="KEPT = []\ndef test_grows():\n    KEPT.append(bytes(100_000))\n"
                                  "import pytest\n@pytest.mark.memtrack_skip\ndef test_skipped():\n    KEPT.append(bytes(100_000))\n")
    result = run(pytester, "--memtrack", "--memtrack-max-leak-score=0.1")
    result.assert_outcomes(failed=1, passed=1)


@pytest.mark.parametrize("marker", ['"abc"', "-1", "2", "", "0.1, 0.2", "limit=float('nan')", "True"])
def test_a_bad_marker_argument_fails_that_test_with_a_message_naming_it(pytester, marker):
    pytester.makepyfile(f"import pytest\n@pytest.mark.max_leak_score({marker})\ndef test_x():\n    pass\n"
                        "def test_other():\n    pass\n")
    result = run(pytester, "--memtrack")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*max_leak_score marker*"])
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize(("option", "message"), [
    ("--memtrack-max-leak-score=abc", "*--memtrack-max-leak-score must be a number between 0 and 1, not 'abc'*"),
    ("--memtrack-max-leak-score=-1", "*must be a number between 0 and 1*"),
    ("--memtrack-max-leak-score=1.5", "*must be a number between 0 and 1*"),
    ("--memtrack-max-runs=3", "*must leave at least 3 measured runs*"),
    ("--memtrack-json=a_file/r.json", "*cannot write a report*"),
    ("--memtrack-overhead-budget=200%", "*must be a fraction*"),
    ("--memtrack-leak-reference=lots", "*must be a size*"),
])
def test_bad_option_values_are_usage_errors_before_any_test_runs(pytester, option, message):
    pytester.makepyfile("def test_x():\n    raise AssertionError('must not run')\n")
    (pytester.path / "a_file").write_text("not a directory")
    result = run(pytester, "--memtrack", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_values_are_read_and_validated(pytester):
    pytester.makeini("[pytest]\nmemtrack = true\nmemtrack_max_leak_score = abc\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option 'memtrack_max_leak_score' must be a number between 0 and 1*"])


HUGE = "1" + "0" * 309  # float() makes it 1e309 = inf, and int(inf) raised OverflowError: an INTERNALERROR


@pytest.mark.parametrize("name", ["memtrack_leak_reference", "memtrack_native_floor"])
@pytest.mark.parametrize("where", ["command line", "ini"])
def test_a_size_too_large_for_a_float_is_a_usage_error_naming_the_option(pytester, name, where):
    pytester.makepyfile("def test_x():\n    raise AssertionError('must not run')\n")
    flag = "--" + name.replace("_", "-")
    if where == "ini":
        pytester.makeini(f"[pytest]\n{name} = {HUGE}\n")
        result = run(pytester, "--memtrack")
        label = f"ini option '{name}'"
    else:
        result = run(pytester, "--memtrack", f"{flag}={HUGE}")
        label = flag
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {label} must be a size of at most 1 TiB (such as 64KB or 1MB), not "
                                 "'10000000000000000000'… (310 characters)."])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("parse", "raw", "words"), [
    (parse_size, "١KB", "must be a size"),  # an Arabic-Indic one: \d matched it, float() read it
    (parse_size, "1025GB", "at most 1 TiB"),
    (parse_score, "0_1", "between 0 and 1"),  # float("0_1") is 1.0: a typo became the loosest limit
    (parse_score, "٠.٥", "between 0 and 1"),
    (parse_fraction, "5_0%", "must be a fraction"),
    (parse_time_budget, "1_0", "number of seconds"),
    (parse_non_negative_float, "1e400", "non-negative number"),
    (parse_positive_int, "٣", "positive whole number"),
    (parse_positive_int, "9" * 4301, "positive whole number up to 1,000,000,000"),  # int() raised ValueError
    (parse_positive_int, "0", "positive whole number"),
])
def test_numbers_are_read_in_ascii_decimal_only_and_within_range(parse, raw, words):
    with pytest.raises(pytest.UsageError, match=words) as caught:
        parse(raw, "--opt")
    assert str(caught.value).startswith("--opt ") and str(caught.value).endswith(".")
    assert len(str(caught.value)) < 200


def test_numbers_people_write_are_still_read():
    assert parse_score(" 0.25 ", "x") == 0.25 and parse_score("1e-1", "x") == 0.1 and parse_score(".5", "x") == 0.5
    assert parse_fraction("5%", "x") == 0.05 and parse_time_budget("0", "x") == 0.0
    assert parse_size("1.5MiB", "x") == 1572864 and parse_size("1024GiB", "x") == 1024**4
    assert parse_positive_int("+007", "x") == 7 and parse_positive_int("1000000000", "x") == 1_000_000_000


@pytest.mark.parametrize("ini", ["memtrack = maybe\n", "memtrack = true\nmemtrack_trace_all = maybe\n"])
def test_a_bad_boolean_in_the_ini_file_names_the_key(pytester, ini):
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    key = ini.strip().splitlines()[-1].split(" = ")[0]
    result.stderr.fnmatch_lines([f"ERROR: ini option '{key}' must be true or false (*'maybe'*)."])


@pytest.mark.parametrize(("args", "message"), [
    (["--memtrack-warmup-runs=1000"],
     "ERROR: --memtrack-warmup-runs (1000) leaves fewer than 3 measured runs within the 10 runs of "
     "--memtrack-max-runs (its default): lower --memtrack-warmup-runs to 7 or less, or raise --memtrack-max-runs "
     "to 1003 or more."),
    (["--memtrack-warmup-runs=1000000000"], "*lower --memtrack-warmup-runs to 7 or less.*"),
    (["--memtrack-max-runs=4"],
     "ERROR: --memtrack-max-runs (4) must leave at least 3 measured runs after the 2 warm-up runs of "
     "--memtrack-warmup-runs (its default): raise --memtrack-max-runs to 5 or more, or lower "
     "--memtrack-warmup-runs to 1 or less."),
    (["--memtrack-max-runs=20", "--memtrack-warmup-runs=30"],
     "ERROR: --memtrack-max-runs (20) must leave at least 3 measured runs after the 30 warm-up runs of "
     "--memtrack-warmup-runs: raise --memtrack-max-runs to 33 or more, or lower --memtrack-warmup-runs to 17 or "
     "less."),
])
def test_too_few_measured_runs_name_the_setting_to_change(pytester, args, message):
    pytester.makepyfile("def test_x():\n    raise AssertionError('must not run')\n")
    result = run(pytester, "--memtrack", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(("raw", "message"), [
    ("", "--memtrack-json must name a file, not an empty string."),  # was: '' is a directory (the cwd)
    ("a_file/r.json", "--memtrack-json: cannot write a report to 'a_file/r.json': '{dir}/a_file' is a file, not a "
                      "directory."),
    ("a_file/deeper/r.json", "--memtrack-json: cannot write a report to 'a_file/deeper/r.json': '{dir}/a_file' is "
                             "a file, not a directory."),
])
def test_an_unusable_report_path_is_named_for_what_it_is(tmp_path, monkeypatch, raw, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(pytest.UsageError) as caught:
        parse_writable_path(raw, "--memtrack-json")
    assert str(caught.value) == message.format(dir=tmp_path)


def test_a_missing_directory_is_created_unless_its_parent_is_not_writable(tmp_path, monkeypatch):
    assert parse_writable_path(str(tmp_path / "new" / "deeper" / "r.json"), "--x") == str(tmp_path / "new" / "deeper"
                                                                                             / "r.json")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Faked (the suite may run as root, for whom every directory is writable).
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != str(locked) and real_access(path, mode))
    with pytest.raises(pytest.UsageError) as caught:
        parse_writable_path(str(locked / "a" / "b" / "r.json"), "--memtrack-json")
    assert str(caught.value) == (f"--memtrack-json: cannot write a report to '{locked}/a/b/r.json': the directory "
                                 f"'{locked}/a/b' does not exist, and it cannot be created because '{locked}' is not "
                                 "writable.")
    with pytest.raises(pytest.UsageError) as caught:
        parse_writable_path(str(locked / "r.json"), "--memtrack-store", "the history store")
    assert str(caught.value) == (f"--memtrack-store: cannot write the history store to '{locked}/r.json': the "
                                 f"directory '{locked}' is not writable.")


def test_a_device_is_not_a_report_path():
    with pytest.raises(pytest.UsageError, match="it is not a regular file"):
        parse_writable_path(os.devnull, "--memtrack-json")


def test_help_lists_every_option(pytester):
    result = run(pytester, "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--memtrack *", "*--memtrack-json=*", "*--memtrack-max-leak-score=*"])


def test_plugin_can_be_disabled_with_p_no(pytester):
    pytester.makepyfile(LEAKY)
    result = pytester.runpytest("-p", "no:memtrack", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


@pytest.mark.slow
def test_xdist_with_two_workers_writes_one_merged_report(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_a=LEAKY, test_b="import mt_xdist_pkg\ndef test_b1():\n    pass\ndef test_b2():\n    pass\n")
    pytester.mkpydir("mt_xdist_pkg").joinpath("__init__.py").write_text("TABLE = [bytes(100) for _ in range(100)]\n")
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "-n", "2", "--memtrack", "--memtrack-json=r.json")
    result.assert_outcomes(failed=1, passed=4)
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    assert report["run"]["workers"] == 2
    assert len(report["tests"]) == 5
    assert {t["worker"] for t in report["tests"]} <= {"gw0", "gw1"}
    leaking = [t for t in report["tests"] if t["leaking"]]
    assert [t["nodeid"] for t in leaking] == ["test_a.py::test_leaks"]
    assert report["packages"]["mt_xdist_pkg"]["memory_metrics"]["current_memory_usage"] > 10_000
    assert "json" not in report["packages"]  # the standard library is tracked only with --memtrack-measure-all


def test_measure_all_tracks_the_standard_library_too(pytester):
    pytester.makepyfile("import json\ndef test_x():\n    assert json.dumps(1)\n")
    run(pytester, "--memtrack", "--memtrack-measure-all", "--memtrack-json=r.json")
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["packages"]["json"]["memory_metrics"]["current_memory_usage"] > 0


@pytest.mark.slow
def test_an_interrupted_run_still_writes_a_complete_report(pytester):
    pytester.makepyfile("def test_a():\n    pass\ndef test_b():\n    raise KeyboardInterrupt\ndef test_c():\n    pass\n")
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "--memtrack", "--memtrack-json=r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    assert report["run"]["interrupted"] is True
    assert [t["nodeid"] for t in report["tests"]] == ["test_interrupted_run_still_writes_a_complete_report.py::test_a"] \
        or report["tests"][0]["outcome"] == "passed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak is Linux's VmHWM (null elsewhere)")
def test_each_test_gets_its_own_peak_read_when_it_ends(pytester):
    pytester.makepyfile(test_app="""
def test_holds_32_mib_while_it_runs():
    block = bytearray(32 * 1024 * 1024)
    block[::4096] = bytes(len(range(0, len(block), 4096)))  # touch every page
    del block

def test_small():
    pass
""")
    run(pytester, "--memtrack", "--memtrack-json=r.json").assert_outcomes(passed=2)
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    big, small = tests["test_holds_32_mib_while_it_runs"], tests["test_small"]
    assert big["rss_peak"] - big["rss_before"] >= 30 * 1024 * 1024 and big["rss_peak"] >= big["rss_after"] > 0
    assert 0 <= small["rss_peak"] - small["rss_before"] < 16 * 1024 * 1024  # the mark was reset before it


def test_a_marker_on_a_class_or_module_hunts_its_tests(pytester):
    pytester.makepyfile(test_app="""
import pytest

@pytest.mark.max_leak_score(1.0)
class TestMarked:
    def test_in_marked_class(self):
        pass

def test_unmarked():
    pass
""", test_module="""
import pytest

pytestmark = pytest.mark.max_leak_score(1.0)

def test_in_marked_module():
    pass
""")
    run(pytester, "--memtrack", "--memtrack-json=r.json").assert_outcomes(passed=3)
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    assert tests["test_in_marked_class"]["hunt"] is not None and tests["test_in_marked_module"]["hunt"] is not None
    assert tests["test_unmarked"]["hunt"] is None and tests["test_unmarked"]["leak_score"] is None


@pytest.mark.slow
def test_junit_xml_carries_what_each_test_did_to_memory(pytester):
    """JUnit XML's properties say what a test did to memory (RSS added, a transient peak, a hunted test's score);
    a test that moved nothing gets none. Checked against the same figures in the JSON report."""
    import xml.etree.ElementTree as ET

    pytester.makepyfile(test_app=LEAKY + """
GROWN = []

def test_grows_rss():
    GROWN.append(bytearray(32 * 1024 * 1024))  # zero-filled: resident

def test_peaks():
    data = bytearray(32 * 1024 * 1024)
    del data
""")
    run(pytester, "--memtrack", "--junitxml=junit.xml", "--memtrack-json=r.json")
    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    entries = {t["nodeid"].split("::")[-1]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    assert int(cases["test_grows_rss"]["memtrack_rss_delta"]) >= 30 * 1024 * 1024
    assert int(cases["test_peaks"]["memtrack_rss_peak"]) >= entries["test_peaks"]["rss_before"] + 30 * 1024 * 1024
    assert float(cases["test_leaks"]["memtrack_leak_score"]) > float(cases["test_leaks"]["memtrack_leak_limit"])
    for name, entry in entries.items():
        moved = entry["rss_delta"] != 0
        peaked = entry["rss_peak"] is not None and entry["rss_peak"] > max(entry["rss_before"], entry["rss_after"])
        assert ("memtrack_rss_delta" in cases[name]) == moved, (name, entry, cases[name])
        assert ("memtrack_rss_peak" in cases[name]) == peaked, (name, entry, cases[name])
        assert ("memtrack_leak_score" in cases[name]) == (entry["leak_score"] is not None)
        if moved:
            assert int(cases[name]["memtrack_rss_delta"]) == entry["rss_delta"]


@pytest.mark.slow
def test_a_crashed_xdist_worker_still_leaves_a_complete_report(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_a="def test_ok():\n    pass\ndef test_ok2():\n    pass\n",
                        test_b="import os\ndef test_crash():\n    os._exit(3)\n")
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "-n", "2", "--memtrack", "--memtrack-json=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    assert report["run"]["interrupted"] is True and report["run"]["crashed_workers"]
    outcomes = {t["nodeid"]: t["outcome"] for t in report["tests"]}
    assert outcomes["test_a.py::test_ok"] == "passed" and outcomes["test_b.py::test_crash"] in ("failed", "error")


@pytest.mark.slow
def test_ctrl_c_during_a_run_still_writes_a_complete_report(pytester):
    import signal
    import subprocess
    import sys
    import time

    started = pytester.path / "started"
    pytester.makepyfile(f"""
        import pathlib, time
        def test_first():
            pass
        def test_waits_for_ctrl_c():
            pathlib.Path({str(started)!r}).write_text("yes")
            time.sleep(60)
        def test_never_reached():
            pass
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *NO_PLUGINS, "--memtrack", "--memtrack-json=r.json", "-q"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    assert report["run"]["interrupted"] is True
    assert report["tests"][0]["nodeid"].endswith("::test_first") and report["tests"][0]["outcome"] == "passed"


@pytest.mark.parametrize(("source", "args", "registered"), [
    ("def test_a():\n    pass\n", (), False),
    ("def test_a():\n    pass\n", ("--memtrack-max-leak-score=0.5",), True),
    ("import pytest\n@pytest.mark.max_leak_score(0.5)\ndef test_a():\n    pass\n", (), True),
    ("import pytest\npytestmark = pytest.mark.max_leak_score(0.5)\ndef test_a():\n    pass\n", (), True),
])
def test_the_hooks_of_hunted_tests_are_registered_only_when_a_test_can_be_hunted(pytester, source, args, registered):
    pytester.makepyfile(test_a=source)
    pytester.makeconftest("""
def pytest_sessionfinish(session):
    names = [name for name, _ in session.config.pluginmanager.list_name_plugin()]
    print("HUNT HOOKS", any(str(name).startswith("memtrack-hunts-") for name in names))
""")
    result = run(pytester, "--memtrack", "-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*HUNT HOOKS {registered}*"])


def test_the_runs_platform_is_named_as_platform_platform_names_it():
    """``platform.platform()`` spawns ``uname -p`` and scans the interpreter's binary (~15 ms at every session's
    end); the report names the platform the same way without either."""
    import platform

    from pytest_memtrack.report.model import platform_name

    expected = platform.platform()
    if platform.processor() not in ("", "unknown"):
        pytest.skip("uname -p names a processor here: platform.platform() includes it")
    assert platform_name() == expected
