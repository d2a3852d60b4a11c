"""What a history store is, and telling one from anything else: the versioned schema and its migrations, and the
checks every opening runs before a byte is read through SQLite or written.

* :func:`inspect` reads the 100-byte SQLite header as plain bytes: a file that is not SQLite, another application's
  database (another ``application_id`` or a ``user_version`` set) or a store of a newer schema is refused without
  ever being opened, so not even a ``-wal``/``-shm`` appears beside it. A header with no ids is looked into with
  ``immutable=1`` (no side files either): only a database with no schema object at all (``sqlite_master`` empty)
  may become a store; a view, a trigger, anything else is somebody's.
* :func:`check` runs on an open connection: ``PRAGMA quick_check`` (damage: scrambled pages, a truncated file), then
  the ids and the schema objects, which must all be our tables and their indexes.

Each refusal is a :class:`StoreError` sentence that names the file and says it was left untouched.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

#: ``PRAGMA application_id`` of a pytest-memtrack store ("MTRK").
APPLICATION_ID = 0x4D54524B


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


_MAGIC = b"SQLite format 3\x00"
_DAMAGED = ("malformed", "not a database", "corrupt")


def _not_ours(path: str, detail: object = None) -> StoreError:
    what = "is an SQLite database but not" if detail is None else "is not"
    why = "" if detail is None else f" ({detail})"
    return StoreError(f"{path!r} {what} a pytest-memtrack history store{why}; it was left untouched; choose another "
                      "file with --memtrack-store.")


def _newer(path: str, version: int) -> StoreError:
    return StoreError(f"the history store {path!r} was written by a newer pytest-memtrack (schema version {version}, "
                      f"this one reads up to {SCHEMA_VERSION}); upgrade pytest-memtrack to use it. The store was left "
                      "untouched.")


def _damaged(path: str, detail: object) -> StoreError:
    return StoreError(f"the history store {path!r} is damaged ({detail}); it was left untouched: restore it from a "
                      "backup, or move it aside to start a new history.")


def read_error(path: str, exc: sqlite3.DatabaseError) -> StoreError:
    """The sentence for an SQLite error met while reading: damage, or a reason to try again (locked, I/O)."""
    if isinstance(exc, sqlite3.OperationalError) and not any(word in str(exc) for word in _DAMAGED):
        return StoreError(f"cannot read the history store {path!r} ({exc}); it was left untouched.")
    return _damaged(path, exc)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def inspect(path: str) -> int:
    """The schema version of the store at ``path`` (0: nothing to read yet: no file, an empty file, or an SQLite
    database with no schema object at all); :class:`StoreError` when it is not ours or is newer than this version.

    Opens no database that is not ours: the 100-byte SQLite header is read as bytes (``application_id`` at offset
    68, ``user_version`` at 60). Only a header with no ids is looked into, with ``immutable=1``, which reads the main
    file and creates no ``-wal``/``-shm``/``-journal``, so the directory stays as it was.
    """
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise StoreError(f"the history store {path!r} is not a regular file (a device, pipe or socket); choose "
                         "another file with --memtrack-store.")
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return 0
    except IsADirectoryError:
        raise StoreError(f"the history store {path!r} is a directory, not a file.") from None
    except OSError as exc:
        raise StoreError(f"the history store {path!r} cannot be read ({exc.strerror}); it was left "
                         "untouched.") from None
    if not header:
        if _size(path + "-wal") > 0:  # an empty file whose content sits in a WAL: another application's database
            raise _not_ours(path)
        return 0
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise _not_ours(path, "it is not an SQLite database")
    app_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise _newer(path, version)
        return version
    if app_id or version or _size(path + "-wal") > 0:
        raise _not_ours(path)
    try:
        db = sqlite3.connect(uri(path, "ro", immutable=True), uri=True)
        try:
            objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _not_ours(path, exc) from None
    if objects:
        raise _not_ours(path)
    return 0


def uri(path: str, mode: str, immutable: bool = False) -> str:
    from urllib.parse import quote

    return f"file:{quote(os.path.abspath(path))}?mode={mode}" + ("&immutable=1" if immutable else "")


def check(db: sqlite3.Connection, path: str) -> int:
    """The schema version, read through ``db``, of a store that is ours and whole; :class:`StoreError` otherwise."""
    try:
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _damaged(path, str(problems[0]).splitlines()[-1] if problems else "no answer")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        objects = db.execute("SELECT type, tbl_name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        raise read_error(path, exc) from None
    if app_id == 0 and version == 0 and not objects:
        return 0
    if app_id != APPLICATION_ID or any(kind not in ("table", "index") or table not in _OUR_TABLES
                                       for kind, table in objects):
        raise _not_ours(path)
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    return int(version)
