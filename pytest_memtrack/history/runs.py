"""What every history backend stores of a run and how it is looked up: :class:`RunInfo`, the comparable-machine
key, the rows read from a report (:func:`report_rows`) and the reading methods over them (:class:`RunQueries`).

The SQLite store (``history.store``) and the PostgreSQL store (``history.postgres``) differ only in how they talk to
their database; what a run is, which runs compare, and how ``12``, ``#12`` or ``main`` name a run are decided here.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The largest run id (SQLite's INTEGER is a signed 64-bit number).
MAX_ID = 2**63 - 1


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


#: The columns of a stored run, in the order :func:`report_rows` gives their values (every backend has them).
RUN_COLUMNS = ("time, name, commit_id, machine, python, implementation, platform, arch, hostname, exitstatus, report, "
               "duration, workers")


def report_rows(report: Mapping[str, Any], name: str | None, commit: str | None
                ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What a store keeps of one run: the run's row (:data:`RUN_COLUMNS`, the report as zlib-compressed JSON), its
    tests' rows (nodeid, outcome, rss_delta, leak_score, leaking, per_run; one per node id, the last wins) and its
    packages' rows (name, current, peak, footprint, leak_score, trend). One reading of the report for every backend.
    """
    run = report.get("run") or {}
    when = _num(run.get("finished")) or _num(run.get("started")) or time.time()
    blob = zlib.compress(json.dumps(report, separators=(",", ":"), default=str).encode("utf-8"), 6)
    row = (when, name or None, commit, machine_key(run), run.get("python"), run.get("implementation"),
           run.get("platform"), run.get("machine"), run.get("hostname"), run.get("exitstatus"), blob,
           _num(run.get("duration")), run.get("workers"))
    tests: dict[str, tuple[Any, ...]] = {}
    for test in report.get("tests") or []:
        memory = (((test.get("hunt") or {}).get("kinds") or {}).get("memory") or {})
        nodeid = str(test.get("nodeid"))
        tests[nodeid] = (nodeid, test.get("outcome"), _num(test.get("rss_delta")), _num(test.get("leak_score")),
                         1 if test.get("leaking") else 0, _num(memory.get("per_run")))
    packages = []
    for pname, entry in (report.get("packages") or {}).items():
        m = (entry or {}).get("memory_metrics") or {}
        packages.append((str(pname), _num(m.get("current_memory_usage")), _num(m.get("peak_memory_usage")),
                         _num(m.get("memory_footprint")), _num(m.get("memory_leak_score")), m.get("memory_trend")))
    return row, list(tests.values()), packages


def parse_ref(ref: str | int) -> tuple[str, int | None, bool]:
    """A run reference: (its text, the run id it names or None, whether it can only be an id: ``#12``)."""
    text = str(ref).strip()
    digits = text[1:] if text.startswith("#") else text
    if digits.isascii() and digits.isdigit():  # "١" is a digit to str.isdigit and int(), not a run id
        if len(digits.lstrip("0")) > len(str(MAX_ID)):  # int() refuses 4,301 digits; no run has such an id
            digits = str(MAX_ID + 1)
        return text, int(digits), text.startswith("#")
    return text, None, text.startswith("#")


class RunQueries:
    """The reading methods every backend shares, over its ``_infos(where, params, limit)``: ``where`` is written
    with ``?`` placeholders and the run table as ``r``."""

    def _infos(self, where: str = "", params: tuple[Any, ...] = (), limit: int | None = None) -> list[RunInfo]:
        raise NotImplementedError

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """Stored runs, newest first."""
        return self._infos(limit=limit)

    def get(self, run_id: int) -> RunInfo | None:
        if not 0 <= run_id <= MAX_ID:  # beyond a 64-bit integer no run can have it (and binding it overflows)
            return None
        found = self._infos("r.id = ?", (run_id,))
        return found[0] if found else None

    def find(self, ref: str | int) -> RunInfo | None:
        """A run by id (``12`` or ``#12``) or, failing that, the newest run with that name."""
        text, run_id, only_id = parse_ref(ref)
        if run_id is not None:
            info = self.get(run_id)
            if info is not None or only_id:
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
