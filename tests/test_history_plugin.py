"""End to end: pytest --memtrack saves runs, compares with a baseline and fails the session on a regression."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sys

import pytest
from stores import APP, MB, PLUGIN_ARGS, damage, foreign_database, read_only, snapshot, unprivileged

from pytest_memtrack.history.store import Store

HAS_SESSION = importlib.util.find_spec("pytest_memtrack.session") is not None
needs_session = pytest.mark.skipif(not HAS_SESSION, reason="pytest_memtrack.session (the lead's session) is not built yet")


pytestmark = pytest.mark.usefixtures("wide_terminal")  # sentences on one line; the table test narrows it to 80


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_app=APP)
    pytester.makeini("[pytest]\n")
    return pytester


def _run(pytester, *args):
    return pytester.runpytest(*PLUGIN_ARGS, *args)


def _grow(pytester, size: int) -> None:
    (pytester.path / "grow.txt").write_text(str(size))


def _store(pytester):
    return pytester.path / ".memtrack" / "history.sqlite"


# -- usage errors: no session needed, the rule is parsed by the option's type= ---------------------------------------

@pytest.mark.parametrize(("rule", "words"), [
    ("footprint", "must look like FIGURE:TOLERANCE"),
    ("footprint:abc", "must be a percentage (10%), a size (5MB) or a plain number (0.1)"),
    ("nosuch:5%", "unknown figure 'nosuch'"),
    ("footprint:-5%", "the tolerance must not be negative"),
])
def test_a_bad_compare_fail_rule_is_a_usage_error_before_any_test_runs(project, rule, words):
    _grow(project, 0)
    result = _run(project, "--memtrack", f"--memtrack-compare-fail={rule}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--memtrack-compare-fail: compare-fail rule '{rule}'*"])
    assert words in result.stderr.str()
    assert "collected" not in result.stdout.str() and "Traceback" not in result.stderr.str()


def test_a_bad_rule_in_the_ini_file_is_a_usage_error_naming_the_ini_option(project):
    _grow(project, 0)
    project.makeini("[pytest]\nmemtrack_compare_fail =\n    footprint:10%\n    peak:lots\n")
    result = _run(project, "--memtrack")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option 'memtrack_compare_fail': compare-fail rule 'peak:lots'" in result.stderr.str()


def test_a_run_name_that_is_also_a_path_is_a_usage_error(project):
    _grow(project, 0)
    result = _run(project, "--memtrack", "--memtrack-save", "test_app.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--memtrack-save took 'test_app.py' as the run name, but that is also a path" in result.stderr.str()


def test_saving_into_an_unwritable_place_is_a_usage_error(project, tmp_path):
    _grow(project, 0)
    blocker = project.path / "blocker"
    blocker.write_text("a file, so no directory can be made under it")
    result = _run(project, "--memtrack", "--memtrack-save", f"--memtrack-store={blocker}/sub/h.sqlite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --memtrack-store: cannot write the history store to '{blocker}/sub/h.sqlite': "
                                 f"'{blocker}' is a file, not a directory."])


@pytest.mark.parametrize("flag", ["--memtrack-save", "--memtrack-compare"])
def test_a_device_as_the_store_is_a_usage_error(project, flag):
    # SQLite opened /dev/null and the run ended with "cannot rollback - no transaction is active".
    _grow(project, 0)
    result = _run(project, "--memtrack", f"{flag}=x", "--memtrack-store=/dev/null")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --memtrack-store must name a regular file, but '/dev/null' is a device, pipe "
                                 "or socket."])


@needs_session
def test_a_run_name_given_with_an_equals_sign_is_taken_even_when_a_file_has_that_name(project):
    # `--memtrack-save main` may have swallowed a test path; `--memtrack-save=main` cannot have.
    _grow(project, 0)
    (project.path / "main").write_text("a file named like the branch")
    result = _run(project, "--memtrack", "--memtrack-save=main")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["memtrack: saved run #1 'main' to .memtrack/history.sqlite"])
    swallowed = _run(project, "--memtrack", "--memtrack-save", "main")
    assert swallowed.ret == pytest.ExitCode.USAGE_ERROR
    assert "--memtrack-save took 'main' as the run name, but that is also a path" in swallowed.stderr.str()


@needs_session
def test_comparing_with_an_id_beyond_sqlites_integers_finds_no_baseline(project):
    _grow(project, 0)
    assert _run(project, "--memtrack", "--memtrack-save").ret == 0
    result = _run(project, "--memtrack", "--memtrack-compare=99999999999999999999")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memtrack: no baseline was found: no stored run has the id or name "
                                 "'99999999999999999999' in *history.sqlite."])
    assert "problem" not in result.stdout.str() and "OverflowError" not in result.stdout.str()


def test_pytest_help_documents_the_history_options_and_the_rule_grammar(project):
    result = _run(project, "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--memtrack-store=PATH*", "*--memtrack-save=*NAME*", "*--memtrack-compare=*NAME|ID*",
                                 "*--memtrack-compare-fail=RULE*", "*memtrack_compare_fail (linelist)*"])
    assert "percentage (10%)" in result.stdout.str()


# -- the gate ---------------------------------------------------------------------------------------------------------

@needs_session
def test_a_test_that_allocates_more_than_the_baseline_fails_the_session_with_a_table(project, monkeypatch):
    _grow(project, 0)
    first = _run(project, "--memtrack", "--memtrack-save=base")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["memtrack: saved run #1 'base' to .memtrack/history.sqlite"])

    _grow(project, 40 * MB)
    monkeypatch.setenv("COLUMNS", "80")
    second = _run(project, "--memtrack", "--memtrack-compare=base", "--memtrack-compare-fail=rss_delta:10MB",
                  "--memtrack-json=report.json")
    second.assert_outcomes(passed=2)  # every test passed; the gate alone fails the session
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    second.stdout.fnmatch_lines([
        "*= memtrack regressions =*",
        "compared with run #1 'base' (*",
        "name / figure*baseline*current*change*limit*result",  # 80 columns: each name on a line of its own
        "--*",
        "test_app.py::test_allocates",
        "  rss_delta*MiB*+*MiB*<= *MiB*REGRESSED",
    ])
    ours = second.outlines[next(i for i, line in enumerate(second.outlines) if "memtrack regressions" in line):]
    assert [line for line in ours if len(line) > 80] == []
    assert "under rss_delta:10MB: 1 regression" in " ".join(second.stdout.str().split())
    comparison = json.loads((project.path / "report.json").read_text())["comparison"]
    assert comparison["regressions"] == 1 and comparison["baseline"]["name"] == "base"
    assert comparison["rules"] == ["rss_delta:10MB"]
    regressed = [r for r in comparison["rows"] if r["regressed"]]
    assert [(r["kind"], r["name"], r["figure"]) for r in regressed] == [("test", "test_app.py::test_allocates", "rss_delta")]
    assert regressed[0]["change"] > 10 * MB


@needs_session
def test_growth_within_the_tolerance_passes_the_gate(project):
    _grow(project, 0)
    assert _run(project, "--memtrack", "--memtrack-save").ret == 0
    _grow(project, 2 * MB)
    result = _run(project, "--memtrack", "--memtrack-compare", "--memtrack-compare-fail=rss_delta:10MB")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memtrack: compared with run #1 (*) under rss_delta:10MB: 0 regressions"])


@needs_session
def test_without_a_baseline_the_gate_prints_a_warning_line_and_does_not_fail(project):
    _grow(project, 0)
    result = _run(project, "--memtrack", "--memtrack-compare-fail=total:10%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memtrack: no baseline was found: the history store * does not exist yet*"])
    assert not _store(project).exists()  # comparing never creates a store


@needs_session
def test_the_ini_store_path_and_ini_rules_are_used(project):
    _grow(project, 0)
    project.makeini("[pytest]\nmemtrack_store = runs/mem.sqlite\nmemtrack_compare_fail = leaking:0\n")
    assert _run(project, "--memtrack", "--memtrack-save=one").ret == 0
    result = _run(project, "--memtrack")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memtrack: compared with run #1 'one' (*) under leaking:0: 0 regressions"])
    with Store(project.path / "runs" / "mem.sqlite", create=False) as store:
        assert [r.name for r in store.runs()] == ["one"]


@needs_session
@pytest.mark.parametrize("content", [b"my notes, not a database\n" * 50, b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_foreign_file_at_the_store_path_is_left_untouched_and_the_run_still_writes_its_report(project, content):
    _grow(project, 0)
    store = _store(project)
    store.parent.mkdir()
    store.write_bytes(content)
    project.makeini("[pytest]\nfilterwarnings =\n    always::pytest_memtrack.history.store.MemtrackWarning\n")
    before = hashlib.sha256(content).hexdigest()
    result = _run(project, "--memtrack", "--memtrack-save", "--memtrack-compare", "--memtrack-json=report.json")
    assert result.ret == 0
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(["*MemtrackWarning: memtrack: cannot compare with a baseline: *is not a pytest-memtrack "
                                 "history store*left untouched*",
                                 "*MemtrackWarning: memtrack: the run was not saved: *left untouched*"])
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["history.sqlite"]
    assert json.loads((project.path / "report.json").read_text())["tests"]


@needs_session
def test_with_filterwarnings_error_an_unusable_store_is_still_reported_as_a_line_and_the_run_passes(project):
    _grow(project, 0)
    project.makeini("[pytest]\nfilterwarnings = error\nmemtrack_store = notes.txt\n")
    (project.path / "notes.txt").write_text("keep me")
    result = _run(project, "--memtrack", "--memtrack-save", "--memtrack-json=report.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["memtrack: the run was not saved: *notes.txt* is not a pytest-memtrack history store*"])
    assert (project.path / "notes.txt").read_text() == "keep me"
    assert (project.path / "report.json").exists()


@pytest.mark.slow
@needs_session
def test_the_gate_works_from_a_store_in_a_read_only_directory(project):
    _grow(project, 0)
    assert _run(project, "--memtrack", "--memtrack-save=base").ret == 0
    _grow(project, 40 * MB)
    before = snapshot(_store(project).parent)
    with read_only(_store(project).parent):
        result = project.run(*unprivileged([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *PLUGIN_ARGS,
                                            "--memtrack", "--memtrack-compare=base",
                                            "--memtrack-compare-fail=rss_delta:10MB"]))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= memtrack regressions =*",
                                 "compared with run #1 'base' (*) under rss_delta:10MB: 1 regression"])
    assert "readonly" not in result.stdout.str() and "MemtrackWarning" not in result.stdout.str()
    assert snapshot(_store(project).parent) == before


def _damaged_store(project):
    _grow(project, 0)
    assert _run(project, "--memtrack", "--memtrack-save=base").ret == 0
    damage(_store(project))
    return snapshot(_store(project).parent)


@needs_session
def test_a_damaged_store_fails_the_gate_with_a_sentence_naming_it_and_is_left_untouched(project):
    before = _damaged_store(project)
    result = _run(project, "--memtrack", "--memtrack-compare-fail=leaking:0", "--memtrack-json=report.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a gate that cannot run does not pass
    result.stdout.fnmatch_lines([
        "*= memtrack regression gate not run =*",
        f"memtrack: the regression gate could not run: the history store '{_store(project)}' is damaged (*); it was "
        "left untouched: restore it from a backup, or move it aside to start a new history.",
        "memtrack: the session fails (exit status 1): --memtrack-compare-fail asked for a gate and it could not run.",
    ])
    assert "no baseline was found" not in result.stdout.str()
    comparison = json.loads((project.path / "report.json").read_text())["comparison"]
    assert comparison["baseline"] is None and "is damaged" in comparison["error"]
    assert snapshot(_store(project).parent) == before


@needs_session
def test_a_damaged_store_without_a_gate_is_a_warning_naming_it_and_the_run_passes(project):
    before = _damaged_store(project)
    project.makeini("[pytest]\nfilterwarnings =\n    always::pytest_memtrack.history.store.MemtrackWarning\n")
    result = _run(project, "--memtrack", "--memtrack-compare", "--memtrack-save")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        f"*MemtrackWarning: memtrack: cannot compare with a baseline: the history store '{_store(project)}' is "
        "damaged (*); it was left untouched*",
        "*MemtrackWarning: memtrack: the run was not saved: the history store * is damaged*"])
    assert snapshot(_store(project).parent) == before


@needs_session
@pytest.mark.parametrize("kind", ["view", "wal"])
def test_another_applications_database_at_the_store_path_is_never_written_into(project, kind):
    _grow(project, 0)
    _store(project).parent.mkdir()
    foreign_database(_store(project), kind)
    before = snapshot(_store(project).parent)
    project.makeini("[pytest]\nfilterwarnings =\n    always::pytest_memtrack.history.store.MemtrackWarning\n")
    result = _run(project, "--memtrack", "--memtrack-save", "--memtrack-compare")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*MemtrackWarning: memtrack: the run was not saved: *is an SQLite database but not a "
                                 "pytest-memtrack history store; it was left untouched*"])
    assert snapshot(_store(project).parent) == before


@pytest.mark.slow
@needs_session
def test_under_xdist_only_the_controller_saves_one_run(project):
    pytest.importorskip("xdist")
    _grow(project, 0)
    project.makepyfile(test_more="import pytest\n\n@pytest.mark.parametrize('i', range(6))\ndef test_n(i):\n    pass\n")
    result = _run(project, "--memtrack", "--memtrack-save=xdist", "-n", "2", "-p", "xdist")
    assert result.ret == 0
    result.assert_outcomes(passed=8)
    with Store(_store(project), create=False) as store:
        runs = store.runs()
        assert [(r.name, r.tests) for r in runs] == [("xdist", 8)]
