"""The run history: an embedded SQLite store of session reports.

One file (``.memtrack/history.sqlite`` under the rootdir by default) holds every saved run with its per-test and
per-package figures, and the full report model as zlib-compressed JSON so that ``compare`` can show anything.

Safety, because a history is only useful when nothing in it is ever lost:

* the file is inspected read-only before anything is written: a file that is not SQLite, a SQLite database that
  is not ours (wrong ``application_id``, or foreign tables) or a store written by a newer pytest-memtrack
  (``user_version`` above :data:`SCHEMA_VERSION`) is refused with :class:`StoreError` and left byte-for-byte untouched;
* WAL journal, a busy timeout and ``BEGIN IMMEDIATE`` transactions let concurrent sessions write one store;
* the schema is versioned (``PRAGMA user_version``) and :data:`MIGRATIONS` bring older stores forward.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

#: ``PRAGMA application_id`` of a pytest-memtrack store ("MTRK").
APPLICATION_ID = 0x4D54524B
BUSY_TIMEOUT_S = 30.0
#: The largest run id (SQLite's INTEGER is a signed 64-bit number).
MAX_ID = 2**63 - 1


class MemtrackWarning(pytest.PytestWarning):
    """A pytest-memtrack problem that does not stop the run (e.g. an unusable history store)."""


class StoreError(Exception):
    """The store cannot be used; the message is a sentence naming the file."""


def _v1(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        name TEXT,
        commit_id TEXT,
        machine TEXT,          -- comparable-machine key: system-implementation-major.minor-arch
        python TEXT,
        implementation TEXT,
        platform TEXT,
        arch TEXT,
        hostname TEXT,
        exitstatus INTEGER,
        report BLOB NOT NULL   -- zlib-compressed JSON of the full report model
    )""")
    db.execute("""CREATE TABLE tests (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        nodeid TEXT NOT NULL,
        outcome TEXT,
        rss_delta REAL,
        leak_score REAL,
        leaking INTEGER,
        per_run REAL,          -- bytes per run of the memory kind, when hunted
        PRIMARY KEY (run_id, nodeid)
    )""")
    db.execute("""CREATE TABLE packages (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        current REAL,
        peak REAL,
        footprint REAL,
        leak_score REAL,
        trend TEXT,
        PRIMARY KEY (run_id, name)
    )""")
    db.execute("CREATE INDEX runs_by_machine ON runs (machine, id)")


def _v2(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE runs ADD COLUMN duration REAL")
    db.execute("ALTER TABLE runs ADD COLUMN workers INTEGER")
    db.execute("CREATE INDEX runs_by_name ON runs (name, id)")


#: ``MIGRATIONS[i]`` brings a store from schema version ``i`` to ``i + 1``.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)
_OUR_TABLES = {"runs", "tests", "packages", "sqlite_sequence"}


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


def _inspect(path: str) -> int:
    """The schema version of the store at ``path`` (0: empty or absent); :class:`StoreError` when it is not ours.

    Read-only: never writes to the file.
    """
    if not os.path.exists(path) or (os.path.isfile(path) and os.path.getsize(path) == 0):
        return 0
    if os.path.isdir(path):
        raise StoreError(f"the history store {path!r} is a directory, not a file.")
    if not os.path.isfile(path):
        raise StoreError(f"the history store {path!r} is not a regular file (a device, pipe or socket); choose "
                         "another file with --memtrack-store.")
    uri = "file:" + _quote(path) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StoreError(f"the history store {path!r} cannot be opened ({exc}); it was left untouched.") from None
    try:
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path!r} is not a pytest-memtrack history store ({exc}); it was left untouched; "
                             "choose another file with --memtrack-store.") from None
    finally:
        db.close()
    if app_id == 0 and version == 0 and not tables:
        return 0
    if app_id != APPLICATION_ID or not tables <= _OUR_TABLES:
        raise StoreError(f"{path!r} is an SQLite database but not a pytest-memtrack history store; it was left "
                         "untouched; choose another file with --memtrack-store.")
    if version > SCHEMA_VERSION:
        raise StoreError(f"the history store {path!r} was written by a newer pytest-memtrack (schema version "
                         f"{version}, this one reads up to {SCHEMA_VERSION}); upgrade pytest-memtrack to use it. "
                         "The store was left untouched.")
    return version


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


class Store:
    """A pytest-memtrack history store. Use as a context manager; every method is one transaction."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = os.fspath(path)
        version = _inspect(self.path)
        exists = os.path.exists(self.path)
        if not exists and not create:
            raise StoreError(f"there is no history store at {self.path!r}; save a run with --memtrack-save first.")
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

    # -- plumbing --------------------------------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another session may have created or migrated the store meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version > SCHEMA_VERSION or (tables and app_id != APPLICATION_ID):
                raise StoreError(f"the history store {self.path!r} changed while it was being opened; it was left "
                                 "untouched.")
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

    def _infos(self, where: str = "", params: tuple[Any, ...] = (), limit: int | None = None) -> list[RunInfo]:
        sql = self._SELECT + (f" WHERE {where}" if where else "") + " ORDER BY r.id DESC"
        if limit is not None:
            sql += f" LIMIT {min(int(limit), MAX_ID)}"  # LIMIT 99999999999999999999 is a datatype mismatch
        return [RunInfo(*row) for row in self._db.execute(sql, params)]

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
        row = self._db.execute("SELECT report FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"there is no run #{run_id} in the history store {self.path!r}.")
        try:
            return json.loads(zlib.decompress(row[0]).decode("utf-8"))
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"run #{run_id} in {self.path!r} is damaged ({exc}).") from None
