"""The history on a real PostgreSQL server (tests/pgserver.py starts one per test process): saving, listing,
comparing and the CI gate, many writers at once, and every way the server can be unusable told in a sentence."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pgserver
import pytest
from samples import sample_report
from stores import APP, CLI, MB, PLUGIN_ARGS

from pytest_memtrack.cli import main
from pytest_memtrack.history.backend import describe, open_store
from pytest_memtrack.history.postgres import SCHEMA_VERSION, redact
from pytest_memtrack.history.store import StoreError

pytestmark = pytest.mark.usefixtures("wide_terminal")  # each line, with its long URL, on one line

# The server fixtures (one server per test process, a new database per test).
pg_server = pgserver.pg_server
pg_url = pgserver.pg_url
free_port = pgserver.free_port


def _sql(url: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(query).fetchall()


def _tables(url: str) -> list[str]:
    return [r[0] for r in _sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]


# -- the store ------------------------------------------------------------------------------------------------------

def test_runs_saved_to_postgresql_read_back_whole_by_id_and_by_name(pg_url):
    base = sample_report()
    grown = copy.deepcopy(base)
    grown["summary"]["total_current_memory"] *= 2
    with open_store(pg_url) as store:
        first = store.save(base, name="main", commit="0123456789abcdef")
        second = store.save(grown, name="feature")
    assert (first.id, second.id) == (1, 2)
    with open_store(pg_url, readonly=True) as store:
        assert [r.name for r in store.runs()] == ["feature", "main"]
        assert store.find("main") == first and store.find("#2") == second and store.find("2") == second
        assert store.find("#3") is None and store.find("nothing") is None
        assert store.latest(machine=first.machine) == second
        assert store.latest(machine="Plan9-CPython-3.11-mips") is None
        assert (first.tests, first.packages, first.leaking, first.commit) == (3, 3, 1, "0123456789abcdef")
        assert store.load_report(first.id) == json.loads(json.dumps(base))
        assert store.load_report(second.id)["summary"]["total_current_memory"] == grown["summary"][
            "total_current_memory"]
    assert _tables(pg_url) == ["memtrack_packages", "memtrack_runs", "memtrack_schema", "memtrack_tests"]
    assert _sql(pg_url, "SELECT version FROM memtrack_schema") == [(SCHEMA_VERSION,)]


def test_reading_a_database_without_our_tables_finds_no_runs_and_creates_nothing(pg_url, capsys):
    assert main(["history", "--store", pg_url]) == 0
    assert capsys.readouterr().out.strip() == f"no runs in {redact(pg_url)}"
    assert _tables(pg_url) == []


def test_a_store_written_by_a_newer_version_is_refused_and_left_as_it_was(pg_url):
    with open_store(pg_url) as store:
        store.save(sample_report(), name="main")
    _sql(pg_url, "UPDATE memtrack_schema SET version = 99 RETURNING version")
    for readonly in (True, False):
        with pytest.raises(StoreError, match="written by a newer pytest-memtrack .schema version 99"):
            open_store(pg_url, readonly=readonly)
    assert _sql(pg_url, "SELECT count(*) FROM memtrack_runs") == [(1,)]


SAVER = """
import sys
from samples import sample_report
from pytest_memtrack.history.backend import open_store

url, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    with open_store(url) as store:  # a new connection each time, as each CI machine's session opens one
        report = sample_report()
        report["tests"][0]["nodeid"] = f"t.py::w{worker}_{i}"
        store.save(report, name=f"w{worker}-{i}")
"""


@pytest.mark.slow
def test_many_processes_saving_at_once_into_a_new_database_lose_no_run_and_create_the_schema_once(pg_url):
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": tests_dir + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, pg_url, str(w), "5"], env=env, stderr=subprocess.PIPE,
                              text=True) for w in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with open_store(pg_url, readonly=True) as store:
        runs = store.runs()
    assert len(runs) == 30 and len({r.id for r in runs}) == 30
    assert sorted(r.name or "" for r in runs) == sorted(f"w{w}-{i}" for w in range(6) for i in range(5))
    assert _sql(pg_url, "SELECT version FROM memtrack_schema") == [(SCHEMA_VERSION,)]
    assert _sql(pg_url, "SELECT count(*) FROM memtrack_tests") == [(90,)]


def test_threads_saving_at_once_lose_no_run(pg_url):
    failures: list[BaseException] = []

    def save(worker: int) -> None:
        try:
            for i in range(4):
                with open_store(pg_url) as store:
                    store.save(sample_report(), name=f"t{worker}-{i}")
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=save, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    with open_store(pg_url, readonly=True) as store:
        assert len(store.runs()) == 32


# -- errors: one sentence, the password never shown, never a file called "postgresql:" ------------------------------

def _cli_fails(args: list[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert done.returncode == 2, done
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pytest-memtrack: error: "), done.stderr
    assert os.listdir(cwd) == []  # no local file or directory named after the URL
    return lines[0]


@pytest.mark.slow
def test_an_unreachable_server_is_one_sentence_naming_the_store_without_its_password(tmp_path):
    url = f"postgresql://ci:s3cr3t-pw@127.0.0.1:{free_port()}/memtrack"
    for args in (["history", "--store", url], ["compare", "main", "feature", "--store", url]):
        line = _cli_fails(args, tmp_path)
        assert "cannot reach the PostgreSQL server of the history store 'postgresql://ci@127.0.0.1:" in line
        assert "Connection refused" in line and "s3cr3t-pw" not in line


@pytest.mark.slow
def test_a_wrong_password_and_a_missing_database_are_each_one_sentence(pg_server, tmp_path):
    wrong = pg_server.url(password="not-the-password")
    line = _cli_fails(["history", "--store", wrong], tmp_path)
    assert "refused user 'memtrack': the user name or password is wrong" in line
    assert "not-the-password" not in line and pg_server.password not in line
    line = _cli_fails(["history", "--store", pg_server.url("no_such_db")], tmp_path)
    assert "has no database 'no_such_db': create it (createdb no_such_db)" in line


def test_a_url_that_is_not_one_is_named_without_its_password(tmp_path):
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://ci:s3cr3t@[::1/memtrack")
    assert "s3cr3t" not in str(caught.value) and "is not a valid PostgreSQL URL" in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ci:pw@db.example:5432/mem", "postgresql://ci@db.example:5432/mem"),
    ("postgres://db/mem?password=pw&sslmode=require", "postgres://db/mem?sslmode=require"),
    ("postgresql://:pw@db/mem", "postgresql://db/mem"),
])
def test_a_store_url_is_shown_without_its_password(url, shown):
    assert describe(url) == shown


def test_without_psycopg_a_postgresql_store_is_a_usage_error_saying_what_to_install(pytester, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    pytester.makepyfile(test_app="def test_plain():\n    pass\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "--memtrack", "--memtrack-save",
                                "--memtrack-store=postgresql://ci@db/memtrack")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == ("ERROR: --memtrack-store=postgresql://ci@db/memtrack: a postgresql:// history "
                                      "store needs psycopg 3, which is not installed: pip install "
                                      "'pytest-memtrack[postgresql]'.")
    assert not (pytester.path / "postgresql:").exists()
    assert main(["history", "--store", "postgresql://ci@db/memtrack"]) == 2
    assert "pip install 'pytest-memtrack[postgresql]'" in capsys.readouterr().err


# -- the session: save, compare and the gate against the server -----------------------------------------------------

@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_app=APP)
    pytester.makeini("[pytest]\n")
    return pytester


def _grow(pytester, size: int) -> None:
    (pytester.path / "grow.txt").write_text(str(size))


@pytest.mark.slow
def test_a_session_saves_compares_and_gates_against_the_server(project, pg_url, capsys):
    _grow(project, 0)
    first = project.runpytest(*PLUGIN_ARGS, "--memtrack", "--memtrack-save=base", f"--memtrack-store={pg_url}")
    assert first.ret == 0
    first.stdout.fnmatch_lines([f"memtrack: saved run #1 'base' to {redact(pg_url)}"])
    assert pg_url.split("@")[0].split(":")[-1] not in first.stdout.str()  # the password is never printed

    _grow(project, 40 * MB)
    second = project.runpytest(*PLUGIN_ARGS, "--memtrack", "--memtrack-compare=base", f"--memtrack-store={pg_url}",
                               "--memtrack-compare-fail=rss_delta:10MB", "--memtrack-json=report.json",
                               "--memtrack-save=grown")
    second.assert_outcomes(passed=2)
    assert second.ret == pytest.ExitCode.TESTS_FAILED  # the gate alone fails the session
    second.stdout.fnmatch_lines([
        "*= memtrack regressions =*",
        "compared with run #1 'base' (*) under rss_delta:10MB: 1 regression",
        "test_app.py::test_allocates*rss_delta*REGRESSED",
    ])
    assert json.loads((project.path / "report.json").read_text())["comparison"]["regressions"] == 1

    capsys.readouterr()
    assert main(["history", "--store", pg_url, "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["grown", "base"]
    assert main(["compare", "base", "grown", "--store", pg_url, "--fail", "rss_delta:10MB"]) == 1
    assert "1 figure regressed" in capsys.readouterr().err
    assert not (project.path / "postgresql:").exists() and not (project.path / ".memtrack").exists()


@pytest.mark.slow
def test_an_unreachable_server_warns_on_save_but_a_gate_that_cannot_run_fails(project):
    _grow(project, 0)
    url = f"postgresql://ci:pw@127.0.0.1:{free_port()}/memtrack"
    project.makeini("[pytest]\nfilterwarnings =\n    always::pytest_memtrack.history.store.MemtrackWarning\n")
    saved = project.runpytest(*PLUGIN_ARGS, "--memtrack", "--memtrack-save", f"--memtrack-store={url}")
    assert saved.ret == 0  # the plugin's own failure never turns a passing suite red
    saved.stdout.fnmatch_lines(["*MemtrackWarning: memtrack: the run was not saved: cannot reach the PostgreSQL "
                                "server of the history store 'postgresql://ci@127.0.0.1:*"])
    gated = project.runpytest(*PLUGIN_ARGS, "--memtrack", "--memtrack-compare-fail=total:10%",
                              f"--memtrack-store={url}")
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    gated.stdout.fnmatch_lines(["memtrack: the regression gate could not run: cannot reach the PostgreSQL server*"])
    assert ":pw@" not in saved.stdout.str() + gated.stdout.str()
    assert not (project.path / "postgresql:").exists()


# -- shards: saved as one run, compared as one run -------------------------------------------------------------------

def test_a_merge_of_shards_is_saved_as_one_run_and_gates_the_next_merge(pg_url, tmp_path, capsys):
    def shard(nodeid: str, total: int) -> str:
        report = sample_report()
        report["tests"] = [{**report["tests"][1], "nodeid": nodeid}]
        report["summary"]["total_current_memory"] = total
        path = tmp_path / f"{nodeid.split('::')[1]}-{total}.json"
        path.write_text(json.dumps(report))
        return str(path)

    base = str(tmp_path / "base.json")
    assert main(["merge", shard("t.py::a", 1), shard("t.py::b", 1), "-o", base]) == 0
    assert main(["history", "save", base, "--name", "main", "--store", pg_url, "--commit", "abc1234"]) == 0
    assert f"saved run #1 'main' (2 tests, 3 packages) to {redact(pg_url)}" in capsys.readouterr().out
    grown = str(tmp_path / "grown.json")
    assert main(["merge", shard("t.py::a", 1), shard("t.py::b", 1), "-o", grown]) == 0
    grown_report = json.loads(Path(grown).read_text())
    grown_report["summary"]["total_current_memory"] *= 3  # the session total the gate reads
    Path(grown).write_text(json.dumps(grown_report))
    capsys.readouterr()
    assert main(["compare", "main", grown, "--store", pg_url, "--fail", "total:10%"]) == 1
    assert "1 figure regressed" in capsys.readouterr().err
    assert main(["compare", "main", base, "--store", pg_url, "--fail", "total:10%"]) == 0
