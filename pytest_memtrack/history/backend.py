"""Which history store a ``--memtrack-store`` (or ``--store``) value names, and opening it.

A file is the SQLite store (``history.store``), the default that needs nothing; a ``postgresql://`` (or
``postgres://``) URL is a store on a PostgreSQL server (``history.postgres``) that many machines share. Everything
that reads or writes the history (the session's save and gate, ``history``, ``compare``) opens it through
:func:`open_store` and sees one interface, :class:`HistoryStore`; :func:`describe` is how a store is named in a
sentence (a URL without its password).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pytest_memtrack.history.runs import RunInfo

# The backends are imported when a store is opened: deciding whether a location is a server costs a session
# nothing (sqlite3 and the PostgreSQL code are a few milliseconds of every start-up otherwise).

URL_SCHEMES = ("postgresql://", "postgres://")


class HistoryStore(Protocol):
    """What every backend offers; each method is one transaction. Errors are ``StoreError`` sentences."""

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def save(self, report: Mapping[str, Any], name: str | None = None, commit: str | None = None) -> RunInfo: ...

    def runs(self, limit: int | None = None) -> list[RunInfo]: ...

    def find(self, ref: str | int) -> RunInfo | None: ...

    def latest(self, machine: str | None = None, exclude: int | None = None) -> RunInfo | None: ...

    def load_report(self, run_id: int) -> dict[str, Any]: ...


def is_url(location: str) -> bool:
    """Whether ``location`` names a database server rather than a file."""
    return location.strip().lower().startswith(URL_SCHEMES)


def describe(location: str) -> str:
    """``location`` as a sentence shows it: a URL without its password, a path as it is."""
    if not is_url(location):
        return location
    from pytest_memtrack.history.postgres import redact

    return redact(location)


def may_exist(location: str) -> bool:
    """False when there is certainly no store yet (no such file); a server is asked when the store is opened."""
    return is_url(location) or os.path.exists(location)


def open_store(location: str, *, readonly: bool = False) -> HistoryStore:
    """The store at ``location``: for saving (created when needed), or ``readonly`` for reading only (nothing is
    created or changed; a server database without our tables is a store with no runs)."""
    if is_url(location):
        from pytest_memtrack.history.postgres import PostgresStore

        return PostgresStore(location, readonly=readonly)
    from pytest_memtrack.history.store import Store

    return Store(location, readonly=readonly)
