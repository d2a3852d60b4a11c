"""One report from many CI shards: ``pytest-memtrack merge A.json B.json -o ALL.json``.

A suite split across machines (pytest-split, ``-k`` slices, a CI matrix of shards) writes one JSON report per shard.
The merge makes the one report the whole run would have written:

* **tests**: every shard's tests, each once, marked with the shard it ran in (``"shard": "A.json"``). A test id in
  two shards is refused (:class:`MergeError`): each test belongs to one shard, and a test counted twice (a shard
  merged twice, a retried shard next to its first attempt) would make every count of the run wrong;
* **packages**: combined exactly as the xdist controller combines its workers (``tracking.merge``): each shard is
  another process with its own copy of every package, so figures are totals and the history is the sum of every
  shard's latest reading, each shard's history counted from the run's start (shards queue for machines and
  start minutes apart, on clocks that need not agree: aligned, they add up like workers that started together,
  and a late shard is not a step up that reads as growth); leak scores, trends, the leaks section and the
  suggestions are then recomputed from those figures with the one rule (``tracking.payloads.is_leaking``) at
  the shards' leak threshold;
* **run**: from the first start to the last finish; ``interrupted`` if any shard was; the exit status is the worst
  shard's (a shard that collected no test, status 5, does not fail a run whose other shards passed);
  ``merged_from`` and ``shards`` say what it was made of. System memory pressure is the worst the shards recorded,
  never the merging machine's.

Shards must come from one kind of machine (:func:`history.runs.machine_key`: OS, Python, CPU) and one leak
threshold, or the sums and the leak rule would mix things that do not add up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memtrack import __version__
from pytest_memtrack.errors import CliError
from pytest_memtrack.history.runs import machine_key
from pytest_memtrack.report.loading import FORMAT_VERSION
from pytest_memtrack.report.model import package_sections
from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.tracking.merge import import_packages, records_from_report
from pytest_memtrack.tracking.metrics import DEFAULT_HISTORY_SIZE
from pytest_memtrack.tracking.monitor import PASS_NOISE_BYTES, MemoryMonitor
from pytest_memtrack.tracking.payloads import PRESSURE_LEVELS
from pytest_memtrack.tracking.room import Room

#: pytest's exit statuses, from the best to the worst outcome of a run (5: no tests collected).
_EXIT_RANK = {0: 0, 5: 1, 1: 2, 2: 3, 4: 4, 3: 5}


class MergeError(CliError):
    """Shards that cannot make one run; the sentence names them."""


@dataclass(frozen=True)
class Shard:
    """One shard's report and the name it is known by in the merged report (its file name)."""

    label: str
    report: dict[str, Any]


class RecordedPressure(MemoryMonitor):
    """A monitor whose system pressure is the one the shards recorded, not the merging machine's."""

    def __init__(self, level: str, *, leak_threshold: float) -> None:
        super().__init__(leak_threshold=leak_threshold, noise_bytes=PASS_NOISE_BYTES)
        self._level = level

    def get_memory_pressure_level(self) -> str:
        return self._level


def recorded_room(shards: Sequence[Shard]) -> Room | None:
    """The room of a merged run for its forecasts: the tightest limit and the fullest process the shards recorded
    (``summary.process_forecast.limit_bytes``, ``summary.process_memory_usage``); None when a shard recorded none
    (written before forecasts existed): the merged report then has no forecasts rather than the merging machine's."""
    limits, sizes = [], []
    for shard in shards:
        summary = shard.report["summary"]
        limit = (summary.get("process_forecast") or {}).get("limit_bytes")
        rss = summary.get("process_memory_usage")
        if not isinstance(limit, int) or isinstance(rss, bool) or not isinstance(rss, (int, float)):
            return None
        limits.append(limit)
        sizes.append(float(rss))
    return Room(min(limits), max(sizes)) if limits else None


def merged_exitstatus(statuses: Sequence[int | None]) -> int | None:
    """The worst shard's exit status; unknown (None) when a shard's is unknown and none failed."""
    known = [s for s in statuses if s is not None]
    worst = max(known, key=lambda s: _EXIT_RANK.get(s, len(_EXIT_RANK)), default=None)
    if len(known) < len(statuses) and worst in (None, 0, 5):
        return None
    if worst == 5 and any(s == 0 for s in known):
        return 0
    return worst


def _check_compatible(shards: Sequence[Shard]) -> float:
    first = shards[0]
    key = machine_key(first.report["run"])
    threshold = float((first.report["run"].get("config") or {}).get("leak_threshold", 0.1))
    for shard in shards[1:]:
        other = machine_key(shard.report["run"])
        if other != key:
            raise MergeError(f"{first.label!r} ran on {key} but {shard.label!r} on {other}: the shards of "
                             "one run share the OS, Python and CPU; merge each kind of machine apart.")
        theirs = float((shard.report["run"].get("config") or {}).get("leak_threshold", 0.1))
        if theirs != threshold:
            raise MergeError(f"{first.label!r} used the leak threshold {threshold:g} but {shard.label!r} "
                             f"{theirs:g}: the merged leaks need one rule; run every shard with the same "
                             "--memtrack-leak-threshold.")
    return threshold


def _tests(shards: Sequence[Shard]) -> list[dict[str, Any]]:
    seen: dict[str, str] = {}
    tests = []
    for shard in shards:
        for test in shard.report["tests"]:
            nodeid = test["nodeid"]
            if nodeid in seen:
                where = (f"twice in {shard.label!r}" if seen[nodeid] == shard.label
                         else f"in both {seen[nodeid]!r} and {shard.label!r}")
                raise MergeError(f"the test {nodeid!r} is {where}: each test belongs to one shard; merge each "
                                 "shard's report once (a retried shard replaces its first attempt).")
            seen[nodeid] = shard.label
            tests.append({**test, "shard": shard.label})
    return tests


def _run(shards: Sequence[Shard], argv: list[str]) -> dict[str, Any]:
    runs = [shard.report["run"] for shard in shards]
    now = time.time()
    started = min((r["started"] for r in runs if r.get("started") is not None), default=now)
    finished = max((r["finished"] for r in runs if r.get("finished") is not None), default=now)
    hosts = list(dict.fromkeys(str(r.get("hostname") or "unknown") for r in runs))
    first = runs[0]
    return {
        "started": started, "finished": finished, "duration": max(0.0, finished - started),
        **{key: first.get(key) for key in ("python", "implementation", "platform", "machine")},
        "hostname": ", ".join(hosts), "pid": os.getpid(), "argv": argv,
        "rootdir": str(first.get("rootdir") or ""),
        "workers": sum(int(r.get("workers") or 0) for r in runs),
        "interrupted": any(bool(r.get("interrupted")) for r in runs),
        "exitstatus": merged_exitstatus([r.get("exitstatus") for r in runs]),
        "config": first.get("config") or {"max_leak_score": None, "leak_threshold": 0.1},
        "native_reading": first.get("native_reading"),
        "crashed_workers": [f"{s.label}:{w}" for s in shards for w in s.report["run"].get("crashed_workers") or []],
        "problems": [f"{s.label}: {p}" for s in shards for p in s.report["run"].get("problems") or []],
        "untracked_packages": sorted({p for r in runs for p in r.get("untracked_packages") or []}),
        "merged_from": len(shards),
        "shards": [{"source": s.label, "hostname": r.get("hostname"), "started": r.get("started"),
                    "finished": r.get("finished"), "duration": r.get("duration"), "tests": len(s.report["tests"]),
                    "workers": r.get("workers"), "interrupted": bool(r.get("interrupted")),
                    "exitstatus": r.get("exitstatus")} for s, r in zip(shards, runs)],
    }


def _started(shard: Shard) -> float:
    run = shard.report["run"]
    return float(run.get("started") or run.get("finished") or 0.0)


def merge_reports(shards: Sequence[Shard], argv: list[str] | None = None) -> dict[str, Any]:
    """The one report of the run the ``shards`` (checked reports, ``report.loading``) were parts of."""
    if not shards:
        raise MergeError("name at least one shard report to merge.")
    threshold = _check_compatible(shards)
    tests = _tests(shards)
    levels = [shard.report["summary"].get("system_memory_pressure") for shard in shards]
    pressure = max((lv for lv in levels if lv in PRESSURE_LEVELS), key=PRESSURE_LEVELS.index, default="low")
    history_size = max(int((s.report["run"].get("config") or {}).get("history_size") or DEFAULT_HISTORY_SIZE)
                       for s in shards)
    like = LazyLoader(RecordedPressure(pressure, leak_threshold=threshold), history_size=history_size,
                      leak_threshold=threshold)
    like.room.recorded, like.room.live = recorded_room(shards), False  # the shards' memory, not this process's
    for shard in shards:  # what automatic unloading did in each shard
        unload = shard.report["summary"].get("auto_unload") or {}
        if unload.get("enabled"):
            like.auto_unload.enabled, like.auto_unload.idle_seconds = True, float(unload.get("idle_seconds") or 0.0)
        like.auto_unload.freed += unload.get("freed") or []
        like.auto_unload.not_freed += unload.get("not_freed") or []
    origin = min(_started(s) for s in shards)
    records = [{"packages": records_from_report(s.report, shift=origin - _started(s))} for s in shards]
    loader = import_packages(records, like=like)
    return {
        "format_version": FORMAT_VERSION,
        "tool": {"name": "pytest-memtrack", "version": __version__},
        "run": _run(shards, argv if argv is not None else ["pytest-memtrack", "merge", *(s.label for s in shards)]),
        **package_sections(loader, threshold),
        "tests": tests,
        "comparison": None,
    }
