"""The SQLite history store: saving, finding, migrating, refusing what is not ours, concurrent writers."""

from __future__ import annotations

import copy
import hashlib
import multiprocessing
import os
import sqlite3
import sys

import pytest
from samples import sample_report
from stores import damage, foreign_database, make_store, snapshot

from pytest_memtrack.history.store import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    MemtrackWarning,
    Store,
    StoreError,
    machine_key,
)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_saved_run_keeps_its_figures_and_the_full_report(tmp_path):
    report = sample_report()
    with Store(tmp_path / "sub" / "history.sqlite") as store:
        info = store.save(report, name="main", commit="a" * 40)
        assert (info.id, info.name, info.commit, info.tests, info.packages, info.leaking) == (1, "main", "a" * 40, 3, 3, 1)
        assert info.machine == "Linux-CPython-3.11-x86_64" and info.python == "3.11.7"
        assert info.time == report["run"]["finished"]
        assert store.load_report(info.id) == report
        db = store._db
        assert db.execute("SELECT nodeid, rss_delta, leak_score, leaking, per_run FROM tests ORDER BY nodeid").fetchall()[0] == (
            "tests/test_app.py::test_leaks_a_cache_entry_per_request", 400_000, 0.83, 1, 51200.0)
        assert db.execute("SELECT current, peak, footprint, leak_score, trend FROM packages WHERE name = 'app'"
                          ).fetchone() == (2_000_000, pytest.approx(2_400_000), 1_600_000, 0.62, "increasing")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_are_found_by_id_by_name_and_as_the_latest_of_a_machine(tmp_path):
    other = sample_report()
    other["run"]["python"] = "3.12.1"
    with Store(tmp_path / "h.sqlite") as store:
        first = store.save(sample_report(), name="main")
        second = store.save(sample_report(), name="main")
        third = store.save(other, name="42")
        assert [r.id for r in store.runs()] == [3, 2, 1]
        assert [r.id for r in store.runs(limit=1)] == [3]
        assert store.find("main").id == second.id  # the newest of that name
        assert store.find("1").id == first.id and store.find("#2").id == second.id
        assert store.find("42").id == third.id  # no run #42: the name wins
        assert store.find("#42") is None and store.find("nosuch") is None
        assert store.latest(machine=machine_key(sample_report()["run"])).id == second.id
        assert store.latest(machine="nowhere") is None


def test_the_machine_key_ignores_the_hostname_and_the_python_patch_level():
    run = sample_report()["run"]
    assert machine_key(run) == machine_key(dict(run, hostname="other", python="3.11.9"))
    assert machine_key(run) != machine_key(dict(run, python="3.12.0"))


def test_an_old_store_is_migrated_forward_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO runs (time, name, machine, report) VALUES (1.0, 'v1-run', 'm', ?)",
               (__import__("zlib").compress(b'{"tests": []}'),))
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.find("v1-run").id == 1
        store.save(sample_report())
        assert len(store.runs()) == 2


def test_a_store_from_a_newer_version_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "new.sqlite"
    with Store(path) as store:
        store.save(sample_report())
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = _digest(path)
    with pytest.raises(StoreError, match="written by a newer pytest-memtrack.*upgrade"):
        Store(path)
    assert _digest(path) == before


@pytest.mark.parametrize("kind", ["text", "random-bytes", "tables", "view", "wal", "app-id", "user-version"])
def test_a_file_that_is_not_our_store_is_refused_and_left_byte_for_byte_untouched(tmp_path, kind):
    """Only a file with no schema object at all is initialised: another application's database is refused even when
    it holds no table (a view), is in WAL mode (a read must not leave -wal/-shm beside it) or only set its ids."""
    path = tmp_path / "history.sqlite"
    if kind == "text":
        path.write_text("my precious notes\n" * 100)
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(8192))
    else:
        foreign_database(path, kind)
    before = snapshot(tmp_path)
    for options in ({}, {"create": False}, {"readonly": True}):
        with pytest.raises(StoreError, match="not a pytest-memtrack history store.*left untouched"):
            Store(path, **options)
    assert snapshot(tmp_path) == before  # byte for byte, and no -wal/-shm/-journal left behind


def test_a_file_with_no_schema_object_at_all_becomes_a_store(tmp_path):
    path = tmp_path / "history.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = 8192")
    db.execute("VACUUM")  # a valid, non-empty SQLite file whose sqlite_master is empty
    db.close()
    assert path.stat().st_size > 0
    with Store(path) as store:
        store.save(sample_report(), name="first")
    with Store(path, readonly=True) as store:
        assert [r.name for r in store.runs()] == ["first"]


@pytest.mark.parametrize("options", [{}, {"create": False}, {"readonly": True}])
def test_a_damaged_store_is_refused_as_damaged_naming_it_and_left_untouched(tmp_path, options):
    path = make_store(tmp_path / "history.sqlite")
    damage(path)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        with Store(path, **options) as store:
            store.runs()
    assert str(info.value).startswith(f"the history store {str(path)!r} is damaged (")
    assert str(info.value).endswith("); it was left untouched: restore it from a backup, or move it aside to start "
                                    "a new history.")
    assert snapshot(tmp_path) == before  # no -wal/-shm left beside it either


def test_reading_a_store_leaves_its_directory_as_it_was(tmp_path):
    path = make_store(tmp_path / "history.sqlite")
    before = snapshot(tmp_path)
    with Store(path, readonly=True) as store:
        assert [r.name for r in store.runs()] == ["feature", "main"]
        assert store.load_report(store.find("main").id)["run"]["python"] == "3.11.7"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._db.execute("DELETE FROM runs")
    assert snapshot(tmp_path) == before


def test_ids_and_limits_beyond_sqlites_integer_find_nothing_instead_of_overflowing(tmp_path):
    with Store(tmp_path / "h.sqlite") as store:
        store.save(sample_report(), name="99999999999999999999")
        store.save(sample_report())
        assert store.get(2**63) is None and store.get(-1) is None
        assert store.find("#99999999999999999999") is None and store.find("#" + "9" * 4301) is None
        assert store.find("99999999999999999999").name == "99999999999999999999"  # no such id: the name wins
        assert store.find("١") is None  # str.isdigit() and int() take an Arabic-Indic one for run #1
        assert [r.id for r in store.runs(limit=10**30)] == [2, 1]


def test_a_device_is_not_opened_as_a_store():
    # sqlite3 opens /dev/null; the migration failed, and its ROLLBACK failed again ("no transaction is active").
    with pytest.raises(StoreError, match="'/dev/null' is not a regular file"):
        Store(os.devnull)


def test_a_migration_that_fails_outside_a_transaction_reports_its_own_error(tmp_path, monkeypatch):
    def begin_fails(db):
        raise sqlite3.OperationalError("disk I/O error")

    store = Store(tmp_path / "h.sqlite")
    store.close()
    monkeypatch.setattr("pytest_memtrack.history.store.MIGRATIONS", (begin_fails,) * (SCHEMA_VERSION + 1))
    monkeypatch.setattr("pytest_memtrack.history.store.SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="disk I/O error"):
        Store(tmp_path / "h.sqlite")


def test_opening_a_missing_store_for_reading_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no history store"):
        Store(tmp_path / "absent.sqlite", create=False)
    assert os.listdir(tmp_path) == []


def test_memtrack_warning_is_a_pytest_warning_re_exported_by_history():
    from pytest_memtrack.history import plugin as history

    assert issubclass(MemtrackWarning, pytest.PytestWarning) and history.MemtrackWarning is MemtrackWarning


def _writer(path: str, n: int, tag: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    report = sample_report()
    for i in range(n):
        with Store(path) as store:
            store.save(copy.deepcopy(report), name=f"{tag}-{i}")


@pytest.mark.slow
def test_two_processes_saving_twenty_runs_each_leave_forty_readable_runs(tmp_path):
    path = str(tmp_path / "shared" / "history.sqlite")
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(path, 20, tag)) for tag in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    with Store(path, create=False) as store:
        runs = store.runs()
        assert len(runs) == 40 and len({r.id for r in runs}) == 40
        assert sorted(r.name for r in runs) == sorted(f"{t}-{i}" for t in "ab" for i in range(20))
        assert all(store.load_report(r.id)["run"]["python"] == "3.11.7" for r in runs)
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
