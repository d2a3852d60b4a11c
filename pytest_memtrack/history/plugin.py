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
import sqlite3
import subprocess
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_memtrack.history.backend import describe, is_url, may_exist, open_store
from pytest_memtrack.history.compare import Comparison, Rule, RuleError, compare_reports, parse_rule, render_summary
from pytest_memtrack.history.postgres import MissingDriver, driver
from pytest_memtrack.history.store import MemtrackWarning, RunInfo, StoreError, machine_key
from pytest_memtrack.options import DEFAULT_STORE
from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, terminal_width
from pytest_memtrack.settings import parse_writable_path, resolve
from pytest_memtrack.units import shown

__all__ = ["MemtrackWarning", "HistoryPlugin", "configure"]


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
    rules = [r if isinstance(r, Rule) else parse_rule_or_usage_error(r) for r in raw_rules]
    store = _store_path(config)
    if is_url(store):
        if save is not None or compare_ref is not None or rules:
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
    plugin = HistoryPlugin(config, store, save, compare_ref if compare_ref is not None else "", rules,
                           compare=compare_ref is not None or bool(rules))
    config.pluginmanager.register(plugin, "memtrack-history")


def git_commit(directory: str) -> str | None:
    """``git rev-parse HEAD`` in ``directory``, or None (no git, not a repository, or slower than 2 s)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                              timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    is_hash = len(commit) >= 7 and all(c in "0123456789abcdef" for c in commit)
    return commit if done.returncode == 0 and is_hash else None


def find_baseline(store_path: str, ref: str, run: dict[str, Any]) -> tuple[RunInfo | None, dict[str, Any] | None, str]:
    """(baseline run, its report, why none was found). Raises :class:`StoreError` for an unusable store."""
    where = describe(store_path)
    if not may_exist(store_path):
        return None, None, f"no baseline was found: the history store {where} does not exist yet " \
                           "(save a run with --memtrack-save)."
    with open_store(store_path, readonly=True) as store:
        if ref:
            info = store.find(ref)
            why = f"no baseline was found: no stored run has the id or name {shown(ref)} in {where}."
        else:
            key = machine_key(run)
            info = store.latest(machine=key)
            why = f"no baseline was found: no stored run of {key} in {where} (save one with --memtrack-save)."
        if info is None:
            return None, None, why
        return info, store.load_report(info.id), ""


@dataclass
class HistoryPlugin:
    """Session hooks of the history feature (registered on the controller only)."""

    config: pytest.Config
    store_path: str
    save_name: str | None
    compare_ref: str
    rules: list[Rule]
    compare: bool = True
    comparison: Comparison | None = None
    notes: list[str] = field(default_factory=list)  # warning lines for the terminal summary
    saved: RunInfo | None = None
    gate_error: str | None = None  # why the gate asked for could not run
    gate_failed_session: bool = False  # ... and that turned a passing session's exit status into 1

    def _warn(self, message: str) -> None:
        try:
            warnings.warn(MemtrackWarning(message), stacklevel=2)
        except MemtrackWarning:  # filterwarnings=error must not cost the run its report: print the sentence instead
            self.notes.append(message)

    @pytest.hookimpl
    def pytest_memtrack_enrich_report(self, session: pytest.Session, report: dict[str, Any]) -> None:
        if not self.compare or is_worker(session.config):
            return
        try:
            info, baseline, why = find_baseline(self.store_path, self.compare_ref, report.get("run") or {})
        except (StoreError, sqlite3.Error) as exc:
            report["comparison"] = {"baseline": None, "rows": [], "regressions": None,
                                    "rules": [r.text for r in self.rules], "new": [], "new_count": 0,
                                    "error": str(exc)}
            if not self.rules:
                self._warn(f"memtrack: cannot compare with a baseline: {exc}")
                return
            self.gate_error = str(exc)  # a gate that cannot run does not pass
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
                self.gate_failed_session = True
            return
        if info is None or baseline is None:
            self.notes.append(f"memtrack: {why}")
            report["comparison"] = {"baseline": None, "rows": [], "regressions": 0,
                                    "rules": [r.text for r in self.rules], "new": [], "new_count": 0,
                                    "message": why}
            return
        self.comparison = compare_reports(baseline, report, self.rules, info.baseline())
        report["comparison"] = self.comparison.as_dict()
        if self.comparison.regressions and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_memtrack_report_ready(self, session: pytest.Session, report: dict[str, Any]) -> None:
        if self.save_name is None or is_worker(session.config):
            return
        try:
            with open_store(self.store_path) as store:
                self.saved = store.save(report, self.save_name or None, git_commit(str(session.config.rootpath)))
        except (StoreError, sqlite3.Error, OSError) as exc:
            self._warn(f"memtrack: the run was not saved: {exc}")

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        width = terminal_width(tr)

        def say(text: str, **markup: bool) -> None:
            for line in fit(text, width):
                tr.write_line(line, **markup)

        if self.comparison is not None:
            data = self.comparison.as_dict()
            if data["regressions"]:
                tr.write_sep("=", "memtrack regressions", red=True, bold=True)
                for line in render_summary(data, width=width).splitlines():
                    tr.write_line(line)
            else:
                say("memtrack: " + render_summary(data).splitlines()[0], green=True)
        if self.gate_error is not None:
            tr.write_sep("=", "memtrack regression gate not run", red=True, bold=True)
            say(f"memtrack: the regression gate could not run: {self.gate_error}", red=True)
            if self.gate_failed_session:
                say("memtrack: the session fails (exit status 1): --memtrack-compare-fail asked for a gate "
                    "and it could not run.", red=True)
        for note in self.notes:
            say(note, yellow=True)
        if self.saved is not None:
            name = f" {self.saved.name!r}" if self.saved.name else ""
            where = self.store_path if is_url(self.store_path) else short_path(self.store_path, str(tr.config.rootpath))
            say(f"memtrack: saved run #{self.saved.id}{name} to {describe(where)}")
