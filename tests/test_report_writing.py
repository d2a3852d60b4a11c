"""Writing the report files at the end of a session: a failed write is said, never hidden nor fatal; a killed writer's
temporary file is cleared by the next write; Ctrl-C while writing neither loses a report nor prints a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
from stores import unprivileged

from pytest_memtrack.report import atomic

pytestmark = pytest.mark.usefixtures("wide_terminal")  # each warning, with its long path, on one line

TEMPORARY = re.compile(r"^\.r\.json\.memtrack-tmp-(\d+)-[0-9a-f]+$")

BREAKS_THE_REPORT_DIRECTORY = """
import os
import pathlib
import shutil


def test_breaks_the_report_directory():
    if os.environ.get("BREAK") == "read-only":
        os.chmod("reports", 0o555)
    else:
        shutil.rmtree("reports")
        pathlib.Path("reports").write_text("a file where the report directory was")
"""


def test_a_report_that_cannot_be_written_is_a_warning_naming_it_and_the_run_still_passes(pytester):
    pytester.makepyfile(test_break=BREAKS_THE_REPORT_DIRECTORY)
    (pytester.path / "reports").mkdir()
    result = pytester.runpytest("--memtrack", "--memtrack-json=reports/r.json", "--memtrack-html=reports/r.html")
    assert result.ret == 0  # the plugin's own failure never turns a passing suite red
    reports = pytester.path / "reports"
    result.stdout.fnmatch_lines([
        f"memtrack: warning: could not write the JSON report reports/r.json: Not a directory: {reports}",
        f"memtrack: warning: could not write the HTML report reports/r.html: Not a directory: {reports}",
    ])
    assert "memtrack: JSON report:" not in result.stdout.str()
    assert "memtrack: HTML report:" not in result.stdout.str()


@pytest.mark.slow
def test_a_report_directory_made_read_only_keeps_the_previous_report_and_the_run_still_passes(pytester, monkeypatch):
    pytester.makepyfile(test_break=BREAKS_THE_REPORT_DIRECTORY)
    monkeypatch.setenv("BREAK", "read-only")
    reports = pytester.path / "reports"
    reports.mkdir()
    (reports / "r.json").write_text("the previous report")
    try:
        result = pytester.run(*unprivileged([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--memtrack",
                                             "--memtrack-json=reports/r.json"]), timeout=120)
    finally:
        reports.chmod(0o755)
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"memtrack: warning: could not write the JSON report reports/r.json: "
                                 f"Permission denied: {reports}"])
    assert "memtrack: JSON report:" not in result.stdout.str()
    assert os.listdir(reports) == ["r.json"] and (reports / "r.json").read_text() == "the previous report"


# -- temporary files -------------------------------------------------------------------------------------------------

def test_our_temporary_files_are_named_recognisably_after_the_target_and_our_pid(tmp_path):
    name = atomic.temporary_name(str(tmp_path / "r.json"))
    assert TEMPORARY.match(name) and int(TEMPORARY.match(name).group(1)) == os.getpid()
    assert atomic.temporary_name(str(tmp_path / "r.json")) != name


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_write_clears_stale_temporaries_of_dead_writers_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".r.json.memtrack-tmp-{dead}-0a1b2c3d", tmp_path / f".r.html.memtrack-tmp-{dead}-ffff"]
    live = tmp_path / f".r.json.memtrack-tmp-{os.getppid()}-0a1b2c3d"  # a live process: maybe still writing
    others = [tmp_path / "notes.txt", tmp_path / ".r.json.abc123.tmp", tmp_path / f".r.json.memtrack-tmp-{dead}"]
    for path in [*stale, live, *others]:
        path.write_text("half a report")
    atomic.write_text_atomic(tmp_path / "r.json", "{}")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, *(p.name for p in others), "r.json"])


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="flock: POSIX only")
def test_a_temporary_whose_writer_still_holds_its_lock_is_kept_even_when_its_pid_looks_dead(tmp_path):
    """A writer in another PID namespace (a container sharing the directory) has a PID that means nothing here."""
    locker = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        "handle = open(sys.argv[1], 'w')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"), str(tmp_path / f".r.json.memtrack-tmp-{_dead_pid()}-0a1b2c3d")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline() == "locked\n"
        assert atomic.clear_stale_temporaries(str(tmp_path)) == []
        assert len(os.listdir(tmp_path)) == 1
    finally:
        locker.kill()
        locker.wait()
        locker.stdout.close()
    assert len(atomic.clear_stale_temporaries(str(tmp_path))) == 1 and os.listdir(tmp_path) == []


KILLED_WHILE_WRITING = """
import os
import signal

if os.environ.get("KILL_WHILE_WRITING"):
    def _killed(*args, **kwargs):  # the moment before the temporary file becomes the report
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = _killed


def test_plain():
    pass
"""


@pytest.mark.slow
def test_writers_killed_while_writing_leave_at_most_one_temporary_and_the_next_run_clears_it(pytester, monkeypatch):
    pytester.makepyfile(test_kill=KILLED_WHILE_WRITING)
    (pytester.path / "reports").mkdir()
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--memtrack", "--memtrack-json=reports/r.json"]
    monkeypatch.setenv("KILL_WHILE_WRITING", "1")
    for _ in range(3):
        killed = pytester.run(*argv, timeout=120)
        assert killed.ret == -signal.SIGKILL
        left = os.listdir(pytester.path / "reports")
        assert len(left) == 1 and TEMPORARY.match(left[0]), left  # each write cleared the one killed before it
    monkeypatch.delenv("KILL_WHILE_WRITING")
    result = pytester.run(*argv, timeout=120)
    assert result.ret == 0
    assert os.listdir(pytester.path / "reports") == ["r.json"]
    assert json.loads((pytester.path / "reports" / "r.json").read_text())["tests"][0]["outcome"] == "passed"


# -- Ctrl-C ------------------------------------------------------------------------------------------------------------

CTRL_C_IN_A_REPORT_HOOK = """
import os
import signal


def pytest_memtrack_report_ready(session, report):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the reports are being written
"""

CTRL_C_WHILE_WRITING_THE_JSON = """
import os
import signal

_fsync = os.fsync
_signalled = []


def _fsync_with_ctrl_c(fd):
    if not _signalled:  # the first report file written is the JSON report
        _signalled.append(fd)
        for _ in range(int(os.environ["CTRL_C_TIMES"])):
            os.kill(os.getpid(), signal.SIGINT)
    return _fsync(fd)


os.fsync = _fsync_with_ctrl_c
"""

PLAIN = "def test_plain():\n    pass\n"


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_the_first_ctrl_c_is_held_the_second_raises_later_ones_are_ignored_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with atomic.DeferredInterrupt() as held:
        os.kill(os.getpid(), signal.SIGINT)
        assert held.count == 1
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert held.count == 3
    assert signal.getsignal(signal.SIGINT) is before


def _run_interrupted(pytester):
    reports = pytester.path / "reports"
    reports.mkdir()
    (reports / "r.json").write_text("the previous report")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--memtrack", "--memtrack-json=reports/r.json",
                                           "--memtrack-html=reports/r.html", timeout=120)
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert result.ret == pytest.ExitCode.INTERRUPTED
    return result, reports


@pytest.mark.slow
def test_ctrl_c_in_a_report_hook_finishes_every_report_without_a_traceback(pytester):
    pytester.makepyfile(test_plain=PLAIN)
    pytester.makeconftest(CTRL_C_IN_A_REPORT_HOOK)
    result, reports = _run_interrupted(pytester)
    result.stdout.fnmatch_lines([
        "memtrack: Ctrl-C while the reports were written: they were finished first; the session ends as "
        "interrupted (exit status 2).",
        "memtrack: JSON report: reports/r.json",
        "memtrack: HTML report: reports/r.html",
    ])
    assert json.loads((reports / "r.json").read_text())["tests"][0]["outcome"] == "passed"
    assert "test_plain" in (reports / "r.html").read_text()
    assert sorted(os.listdir(reports)) == ["r.html", "r.json"]


@pytest.mark.slow
def test_ctrl_c_while_the_json_report_is_written_lets_it_finish(pytester, monkeypatch):
    pytester.makepyfile(test_plain=PLAIN)
    pytester.makeconftest(CTRL_C_WHILE_WRITING_THE_JSON)
    monkeypatch.setenv("CTRL_C_TIMES", "1")
    result, reports = _run_interrupted(pytester)
    result.stdout.fnmatch_lines(["memtrack: Ctrl-C while the reports were written: they were finished first; *",
                                 "memtrack: JSON report: reports/r.json"])
    assert json.loads((reports / "r.json").read_text())["tests"][0]["outcome"] == "passed"
    assert sorted(os.listdir(reports)) == ["r.html", "r.json"]


@pytest.mark.slow
def test_ctrl_c_twice_while_the_json_report_is_written_abandons_it_and_keeps_the_previous_file(pytester, monkeypatch):
    pytester.makepyfile(test_plain=PLAIN)
    pytester.makeconftest(CTRL_C_WHILE_WRITING_THE_JSON)
    monkeypatch.setenv("CTRL_C_TIMES", "2")
    result, reports = _run_interrupted(pytester)
    result.stdout.fnmatch_lines([
        "memtrack: Ctrl-C twice while the reports were written: writing them was abandoned; a report not written "
        "keeps its previous file.",
        "memtrack: warning: could not write the JSON report reports/r.json: interrupted (Ctrl-C)",
    ])
    assert "memtrack: JSON report:" not in result.stdout.str()
    assert os.listdir(reports) == ["r.json"] and (reports / "r.json").read_text() == "the previous report"
