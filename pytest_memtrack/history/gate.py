"""The history feature's session hooks: compare the run with its baseline (the gate) and save it.

Registered by ``history.plugin.configure`` only when saving or comparing was asked for, so the stores and the
comparison are imported only then.
"""

from __future__ import annotations

import sqlite3
import subprocess
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_memtrack.history.backend import describe, is_url, may_exist, open_store
from pytest_memtrack.history.compare import Comparison, Rule, compare_reports, render_summary
from pytest_memtrack.history.store import MemtrackWarning, RunInfo, StoreError, machine_key
from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, terminal_width
from pytest_memtrack.units import shown


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
    """Session hooks of the history feature (registered on the controller only: xdist workers neither compare nor
    save)."""

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
        if not self.compare:
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
        if self.save_name is None:
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
