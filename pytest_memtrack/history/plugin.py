"""Run history and the baseline gate: options, the session hooks and the ``history``/``compare`` commands.

A change that makes memory worse should fail the build even when no single run looks like a leak. Save runs
into the history store, compare each run with a baseline, and fail when a figure grew beyond a tolerance::

    pytest --memtrack --memtrack-save=main                  # store this run (named "main")
    pytest --memtrack --memtrack-compare                    # compare with the last run of this machine/Python
    pytest --memtrack --memtrack-compare=main --memtrack-compare-fail=footprint:10% --memtrack-compare-fail=leaking:0

``--memtrack-compare-fail`` implies ``--memtrack-compare`` (a gate that silently does not run helps nobody).
The rule grammar is documented in :mod:`pytest_memtrack.history.compare`. With no baseline (no store yet, no run of
this machine, no run of that name) the run prints a warning line and does not fail. Comparing opens the store
read-only, so a store in a read-only directory gates as well as any. ``--memtrack-store`` names a file (SQLite)
or a ``postgresql://`` URL (``history.backend``). A store that cannot be read (not SQLite, somebody else's database, a
newer schema, damaged, a server that cannot be reached or refuses the credentials) is left untouched and named in a
sentence: with ``--memtrack-compare-fail`` that is a gate that could not run, and it does not pass: a session whose
tests passed exits with status 1 (as for a regression); otherwise (``--memtrack-compare``, ``--memtrack-save``) it is a
:class:`MemtrackWarning` and the exit status is unchanged. The JSON report is written either way.

Only the process that owns the session writes (the xdist controller, never a worker).

Wiring: the options are declared in ``pytest_memtrack.options``; ``pytest_memtrack.plugin`` calls
:func:`configure` when ``--memtrack`` is on, which registers :class:`HistoryPlugin` only when saving or comparing
was asked for. The ``history`` and ``compare`` commands live in ``history.cli``.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import pytest

from pytest_memtrack.history.backend import describe, is_url
from pytest_memtrack.options import DEFAULT_STORE
from pytest_memtrack.settings import parse_writable_path, resolve

if TYPE_CHECKING:
    from pytest_memtrack.history.compare import Rule

__all__ = ["configure"]  # (and MemtrackWarning, HistoryPlugin: see __getattr__)


def __getattr__(name: str) -> Any:
    """The feature's classes, imported when asked for: a session that neither saves nor compares never imports
    the stores (sqlite3, the PostgreSQL driver) or the comparison (~8 ms of every start-up)."""
    if name == "MemtrackWarning":
        from pytest_memtrack.history.store import MemtrackWarning

        return MemtrackWarning
    if name == "HistoryPlugin":
        from pytest_memtrack.history.gate import HistoryPlugin

        return HistoryPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _store_path(config: pytest.Config) -> str:
    raw = config.getoption("memtrack_store", default=None)
    base = str(config.invocation_params.dir)
    if raw is None:
        raw = config.getini("memtrack_store") or None
        base = str(config.inipath.parent) if config.inipath else str(config.rootpath)
    if raw is None:
        return os.path.join(str(config.rootpath), DEFAULT_STORE)
    if not str(raw).strip():
        raise pytest.UsageError("--memtrack-store must name a file, not an empty string.")
    if is_url(str(raw)):  # a database server, not a file: taken as it is
        return str(raw).strip()
    return os.path.normpath(os.path.join(base, os.path.expanduser(str(raw))))


def _ref_option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name, default=None)
    flag = "--" + name.replace("_", "-")
    # nargs="?" swallows a following path: `--memtrack-save tests` would name the run "tests". `--memtrack-save=tests`
    # cannot swallow anything, so a name written with "=" is taken as it is, whatever files the directory holds.
    if value and not _written_inline(config, flag, value):
        if os.path.exists(os.path.join(str(config.invocation_params.dir), value)):
            raise pytest.UsageError(
                f"{flag} took {value!r} as the run name, but that is also a path; write {flag}=NAME, or put "
                f"{flag} after the test paths."
            )
    return value


def _written_inline(config: pytest.Config, flag: str, value: str) -> bool:
    """Whether ``FLAG=VALUE`` is one argument of the command line (or of PYTEST_ADDOPTS or the ini's addopts)."""
    args = [str(arg) for arg in config.invocation_params.args]
    try:
        args += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    except ValueError:
        pass
    try:
        args += [str(arg) for arg in config.getini("addopts")]
    except ValueError:
        pass
    return f"{flag}={value}" in args


def parse_rule_or_usage_error(line: str) -> Rule:
    from pytest_memtrack.history.compare import RuleError, parse_rule

    try:
        return parse_rule(line)
    except RuleError as exc:
        raise pytest.UsageError(f"ini option 'memtrack_compare_fail': {exc}") from None


def _parse_ini_rules(lines: list[str]) -> list[Rule]:
    return [parse_rule_or_usage_error(line) for line in lines]


def configure(config: pytest.Config) -> None:
    """Resolve the history settings and register :class:`HistoryPlugin` when saving or comparing is asked for."""
    save = _ref_option(config, "memtrack_save")
    compare_ref = _ref_option(config, "memtrack_compare")
    raw_rules: list[Any] = resolve(config, "memtrack_compare_fail",
                                   lambda raw, label: _parse_ini_rules(raw.splitlines()), [])
    # The command line's type= parsed its rules; the ini linelist arrives as a list of strings.
    rules = [r if not isinstance(r, str) else parse_rule_or_usage_error(r) for r in raw_rules]
    store = _store_path(config)
    if is_url(store):
        if save is not None or compare_ref is not None or rules:
            from pytest_memtrack.history.postgres import MissingDriver, driver

            try:
                driver()
            except MissingDriver as exc:
                raise pytest.UsageError(f"--memtrack-store={describe(store)}: {exc}") from None
    elif os.path.isdir(store):
        raise pytest.UsageError(f"--memtrack-store must name a file, but {store!r} is a directory.")
    if os.path.exists(store) and not os.path.isfile(store):
        raise pytest.UsageError(f"--memtrack-store must name a regular file, but {store!r} is a device, pipe or "
                                "socket.")
    if save is None and compare_ref is None and not rules:
        return
    if save is not None and not is_url(store):  # an unwritable place is a usage error now, not a lost run later
        parse_writable_path(store, "--memtrack-store", "the history store")
    if is_worker(config):  # only the controller compares and writes
        return
    from pytest_memtrack.history.gate import HistoryPlugin

    plugin = HistoryPlugin(config, store, save, compare_ref if compare_ref is not None else "", rules,
                           compare=compare_ref is not None or bool(rules))
    config.pluginmanager.register(plugin, "memtrack-history")
