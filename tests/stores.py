"""Stores in awkward places and states, for the history tests: damaged, foreign, in a read-only directory.

Root writes into a directory whatever its mode says (``CAP_DAC_OVERRIDE``), so a read-only directory is only
read-only for a process without that capability: :func:`unprivileged` runs a command as it is for an ordinary user,
and as root through ``setpriv`` with the capability dropped (the test is skipped when neither is possible).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import os
import random
import shutil
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from samples import sample_report

from pytest_memtrack.history.store import Store

#: The plugin by its entry point when installed, else by module (a source checkout on sys.path).
PLUGIN_ARGS = [] if any(ep.name == "memtrack" for ep in importlib.metadata.entry_points(group="pytest11")) else [
    "-p", "pytest_memtrack.plugin"]

MB = 1024 * 1024
#: A project whose first test keeps ``grow.txt``'s number of bytes: the history tests' moving figure.
APP = """
import pathlib

KEEP = []


def test_allocates():
    size = int(pathlib.Path(__file__).with_name("grow.txt").read_text())
    KEEP.append(b"x" * size)  # touched pages: the process RSS grows by about `size`


def test_plain():
    assert True
"""


#: ``python -c CLI ARGS...`` runs ``pytest_memtrack.cli.main(ARGS)`` and exits with its status.
CLI = "import sys; from pytest_memtrack.cli import main; sys.exit(main(sys.argv[1:]))"


def make_store(path: Path) -> Path:
    """A store of two runs, "main" and "feature" (whose session total grew 11%), closed (no -wal/-shm beside it)."""
    base = sample_report()
    grown = copy.deepcopy(base)
    grown["summary"]["total_current_memory"] = int(base["summary"]["total_current_memory"] * 1.11)
    with Store(path) as store:
        store.save(base, name="main", commit="0123456789abcdef0123456789abcdef01234567")
        store.save(grown, name="feature")
    return path


def damage(path: Path, seed: int = 16) -> None:
    """Scramble every page after the first: the SQLite header (and our application_id in it) stays valid."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    rng = random.Random(seed)
    data[page:] = bytes(rng.randrange(256) for _ in range(len(data) - page))
    path.write_bytes(bytes(data))


def foreign_database(path: Path, kind: str) -> None:
    """Another application's SQLite database: ``view`` (one view, no table), ``wal`` (a table, WAL journal),
    ``tables`` (a table with a row), ``app-id`` (no schema, another application_id), ``user-version`` (no schema, a
    user_version set)."""
    db = sqlite3.connect(path, isolation_level=None)
    if kind == "view":
        db.execute("CREATE VIEW answers AS SELECT 42 AS answer")
    elif kind == "wal":
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
        db.execute("INSERT INTO accounts VALUES (1, 100.0)")
    elif kind == "tables":
        db.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
        db.execute("INSERT INTO accounts VALUES (1, 100.0)")
    elif kind == "app-id":
        db.execute("PRAGMA application_id = 1234")
    elif kind == "user-version":
        db.execute("PRAGMA user_version = 7")
    else:
        raise ValueError(kind)
    db.close()


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` with its SHA-256: a read must leave this as it was."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def unprivileged(argv: list[str]) -> list[str]:
    """``argv``, run so that a directory's permissions bind it (see the module docstring)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a directory cannot be made read-only for the process")
    return [setpriv, "--bounding-set=-dac_override", *argv]


def cli(*args: str) -> list[str]:
    """The command line that runs ``pytest-memtrack ARGS`` through ``pytest_memtrack.cli.main``, unprivileged."""
    return unprivileged([sys.executable, "-c", CLI, *args])


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` without write permission (r-x for everyone) while the block runs."""
    mode = stat.S_IMODE(directory.stat().st_mode)
    directory.chmod(0o555)
    try:
        yield
    finally:
        directory.chmod(mode)
