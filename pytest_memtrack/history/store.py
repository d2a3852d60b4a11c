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
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

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

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "MemtrackWarning", "RunInfo", "Store", "StoreError",
           "machine_key"]

BUSY_TIMEOUT_S = 30.0
#: The largest run id (SQLite's INTEGER is a signed 64-bit number).
MAX_ID = 2**63 - 1


class MemtrackWarning(pytest.PytestWarning):
    """A pytest-memtrack problem that does not stop the run (e.g. an unusable history store)."""


@dataclass(frozen=True)
class RunInfo:
    id: int
    time: float
    name: str | None
    commit: str | None
    machine: str | None
    python: str | None
    hostname: str | None = None
    tests: int = 0
    packages: int = 0
    leaking: int = 0
    exitstatus: int | None = None

    def baseline(self) -> dict[str, Any]:
        """The ``report["comparison"]["baseline"]`` payload."""
        return {"id": self.id, "name": self.name, "time": self.time, "commit": self.commit,
                "machine": self.machine, "python": self.python}

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "name": self.name, "commit": self.commit,
                "machine": self.machine, "python": self.python, "hostname": self.hostname, "tests": self.tests,
                "packages": self.packages, "leaking": self.leaking, "exitstatus": self.exitstatus}


def machine_key(run: Mapping[str, Any]) -> str:
    """Runs are comparable when this matches: OS, implementation, Python major.minor and CPU architecture
    (the hostname is left out on purpose: CI runners get a new one every time)."""
    system = str(run.get("platform") or "").split("-")[0] or "unknown"
    python = ".".join(str(run.get("python") or "").split(".")[:2]) or "unknown"
    return f"{system}-{run.get('implementation') or 'unknown'}-{python}-{run.get('machine') or 'unknown'}"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class Store:
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
        run = report.get("run") or {}
        when = _num(run.get("finished")) or _num(run.get("started")) or time.time()
        blob = zlib.compress(json.dumps(report, separators=(",", ":"), default=str).encode("utf-8"), 6)
        tests = []
        for test in report.get("tests") or []:
            memory = (((test.get("hunt") or {}).get("kinds") or {}).get("memory") or {})
            tests.append((str(test.get("nodeid")), test.get("outcome"), _num(test.get("rss_delta")),
                          _num(test.get("leak_score")), 1 if test.get("leaking") else 0, _num(memory.get("per_run"))))
        packages = []
        for pname, entry in (report.get("packages") or {}).items():
            m = (entry or {}).get("memory_metrics") or {}
            packages.append((str(pname), _num(m.get("current_memory_usage")), _num(m.get("peak_memory_usage")),
                             _num(m.get("memory_footprint")), _num(m.get("memory_leak_score")),
                             m.get("memory_trend")))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT INTO runs (time, name, commit_id, machine, python, implementation, platform, arch, hostname,"
                " exitstatus, report, duration, workers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (when, name or None, commit, machine_key(run), run.get("python"), run.get("implementation"),
                 run.get("platform"), run.get("machine"), run.get("hostname"), run.get("exitstatus"), blob,
                 _num(run.get("duration")), run.get("workers")))
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

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """Stored runs, newest first."""
        return self._infos(limit=limit)

    def get(self, run_id: int) -> RunInfo | None:
        if not 0 <= run_id <= MAX_ID:  # beyond SQLite's integer no run can have it (and binding it overflows)
            return None
        found = self._infos("r.id = ?", (run_id,))
        return found[0] if found else None

    def find(self, ref: str | int) -> RunInfo | None:
        """A run by id (``12`` or ``#12``) or, failing that, the newest run with that name."""
        text = str(ref).strip()
        digits = text[1:] if text.startswith("#") else text
        if digits.isascii() and digits.isdigit():  # "١" is a digit to str.isdigit and int(), not a run id
            if len(digits.lstrip("0")) > len(str(MAX_ID)):  # int() refuses 4,301 digits; no run has such an id
                digits = str(MAX_ID + 1)
            info = self.get(int(digits))
            if info is not None or text.startswith("#"):
                return info
        found = self._infos("r.name = ?", (text,), limit=1)
        return found[0] if found else None

    def latest(self, machine: str | None = None, exclude: int | None = None) -> RunInfo | None:
        """The newest run, optionally only of this :func:`machine_key`."""
        clauses: list[str] = []
        params: list[object] = []
        if machine is not None:
            clauses.append("r.machine = ?")
            params.append(machine)
        if exclude is not None:
            clauses.append("r.id != ?")
            params.append(exclude)
        found = self._infos(" AND ".join(clauses), tuple(params), limit=1)
        return found[0] if found else None

    def load_report(self, run_id: int) -> dict[str, Any]:
        rows = self._read("SELECT report FROM runs WHERE id = ?", (run_id,))
        row = rows[0] if rows else None
        if row is None:
            raise StoreError(f"there is no run #{run_id} in the history store {self.path!r}.")
        try:
            return json.loads(zlib.decompress(row[0]).decode("utf-8"))
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"run #{run_id} in {self.path!r} is damaged ({exc}).") from None
