"""The run history: an embedded SQLite store of session reports.

One file (``.memtrack/history.sqlite`` under the rootdir by default) holds every saved run with its per-test and
per-package figures, and the full report model as zlib-compressed JSON so that ``compare`` can show anything.

Safety, because a history is only useful when nothing in it is ever lost:

* before anything is read or written the file is checked (:mod:`pytest_memtrack.history.schema`): a file that is
  not SQLite, another application's database (its ids, or any schema object of its own, a lone view included), a
  store written by a newer pytest-memtrack, or a damaged store is refused with :class:`StoreError` and left
  byte-for-byte untouched, with no ``-wal``/``-shm`` left beside it; only a file with no schema object at all is
  initialised;
* reading (``readonly=True``: the gate, ``history``, ``compare``) opens the store with ``mode=ro``, so it works in a
  directory nobody may write to, and leaves the directory as it was;
* WAL journal, a busy timeout and ``BEGIN IMMEDIATE`` transactions let concurrent sessions write one store;
* the schema is versioned (``PRAGMA user_version``) and :data:`MIGRATIONS` bring older stores forward.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_memtrack.history.runs import MAX_ID, RUN_COLUMNS, RunInfo, RunQueries, machine_key, report_rows
from pytest_memtrack.history.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    StoreError,
    check,
    inspect,
    read_error,
    uri,
)

__all__ = ["APPLICATION_ID", "MAX_ID", "MIGRATIONS", "SCHEMA_VERSION", "MemtrackWarning", "RunInfo", "Store",
           "StoreError", "machine_key"]

BUSY_TIMEOUT_S = 30.0
class MemtrackWarning(pytest.PytestWarning):
    """A pytest-memtrack problem that does not stop the run (e.g. an unusable history store)."""


class Store(RunQueries):
    """A pytest-memtrack history store. Use as a context manager; every method is one transaction.

    ``Store(path)`` opens the store for saving, creating it (or initialising an empty file) when needed.
    ``Store(path, readonly=True)`` opens an existing store for reading only (``mode=ro``): it works in a directory
    nobody may write to, migrates nothing, and leaves the directory as it was. ``create=False`` opens an existing
    store for saving. Every way the file can be unusable (not ours, newer, damaged) is a :class:`StoreError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self._tidy = False
        version = inspect(self.path)
        exists = os.path.exists(self.path)
        if not exists and (readonly or not create):
            raise StoreError(f"there is no history store at {self.path!r}; save a run with --memtrack-save first.")
        if readonly:
            self._db = self._open_readonly(version)
            return
        if not exists:
            directory = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the history store directory {directory!r} ({exc.strerror}).") from None
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the history store {self.path!r} ({exc}).") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if version:
                check(self._db, self.path)  # never write into a damaged store: it would only spread the damage
            if version < SCHEMA_VERSION:
                self._migrate()
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use the history store {self.path!r} ({exc}).") from None
        except StoreError:
            self._db.close()
            raise

    def _open_readonly(self, version: int) -> sqlite3.Connection:
        if version == 0:  # an empty file, or a database with no schema yet: a store with no runs
            db = sqlite3.connect(":memory:", isolation_level=None)
            for step in MIGRATIONS:
                step(db)
            return db
        sides = [self.path + suffix for suffix in ("-wal", "-shm")]
        created = not any(os.path.exists(side) for side in sides)  # any we find afterwards are ours to tidy
        db = sqlite3.connect(uri(self.path, "ro"), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            try:
                db.execute("PRAGMA schema_version").fetchone()  # opens the WAL, creating -wal/-shm if need be
            except sqlite3.OperationalError:
                if os.path.exists(sides[0]) or os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK):
                    raise
                # A WAL store in a directory we may not write to, with no -wal beside it: SQLite cannot create the
                # -wal/-shm a reader needs. No -wal means no connection has the store open (and nobody who may not
                # write the directory can open one that writes), so the main file holds every committed run.
                db.close()
                db = sqlite3.connect(uri(self.path, "ro", immutable=True), uri=True, isolation_level=None)
            check(db, self.path)
        except sqlite3.Error as exc:
            db.close()
            self._tidy_side_files(created)
            raise StoreError(f"cannot read the history store {self.path!r} ({exc}); it was left untouched.") from None
        except BaseException:
            db.close()
            self._tidy_side_files(created)
            raise
        self._tidy = created
        return db

    def _tidy_side_files(self, created: bool) -> None:
        """Remove the ``-wal``/``-shm`` our read-only connection created (SQLite leaves them after a reader).

        A read-write connection that only reads lets SQLite itself do it safely: the last connection to close
        checkpoints (nothing to write: the -wal it finds is the empty one we made) and deletes both; while other
        connections are open it leaves them. The database file is not written.
        """
        if not created or not any(os.path.exists(self.path + suffix) for suffix in ("-wal", "-shm")):
            return
        try:
            db = sqlite3.connect(uri(self.path, "rw"), uri=True, timeout=1.0)
            try:
                db.execute("PRAGMA schema_version").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            pass

    # -- plumbing --------------------------------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        if self._tidy:
            self._tidy = False
            self._tidy_side_files(True)

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another session may have created or migrated the store meanwhile, and
            # what the header promised (an empty file) is checked against the schema itself.
            version = check(db, self.path)
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # else the ROLLBACK's own error would hide the one that matters
                db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- writing ---------------------------------------------------------------------------------------------------

    def save(self, report: Mapping[str, Any], name: str | None = None, commit: str | None = None) -> RunInfo:
        """Store one run (the report model); returns its :class:`RunInfo`."""
        run, tests, packages = report_rows(report, name, commit)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * 13)})", run)
            run_id = int(cur.lastrowid or 0)
            db.executemany("INSERT OR REPLACE INTO tests (run_id, nodeid, outcome, rss_delta, leak_score, leaking,"
                           " per_run) VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *t) for t in tests])
            db.executemany("INSERT OR REPLACE INTO packages (run_id, name, current, peak, footprint, leak_score,"
                           " trend) VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *p) for p in packages])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        info = self.get(run_id)
        assert info is not None
        return info

    # -- reading ---------------------------------------------------------------------------------------------------

    _SELECT = ("SELECT r.id, r.time, r.name, r.commit_id, r.machine, r.python, r.hostname,"
               " (SELECT COUNT(*) FROM tests t WHERE t.run_id = r.id),"
               " (SELECT COUNT(*) FROM packages p WHERE p.run_id = r.id),"
               " (SELECT COUNT(*) FROM tests t WHERE t.run_id = r.id AND t.leaking),"
               " r.exitstatus FROM runs r")

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:  # what the check on opening could not see, e.g. a page damaged since
            raise read_error(self.path, exc) from None

    def _infos(self, where: str = "", params: tuple[Any, ...] = (), limit: int | None = None) -> list[RunInfo]:
        sql = self._SELECT + (f" WHERE {where}" if where else "") + " ORDER BY r.id DESC"
        if limit is not None:
            sql += f" LIMIT {min(int(limit), MAX_ID)}"  # LIMIT 99999999999999999999 is a datatype mismatch
        return [RunInfo(*row) for row in self._read(sql, params)]

    def load_report(self, run_id: int) -> dict[str, Any]:
        rows = self._read("SELECT report FROM runs WHERE id = ?", (run_id,))
        row = rows[0] if rows else None
        if row is None:
            raise StoreError(f"there is no run #{run_id} in the history store {self.path!r}.")
        try:
            return json.loads(zlib.decompress(row[0]).decode("utf-8"))
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"run #{run_id} in {self.path!r} is damaged ({exc}).") from None
