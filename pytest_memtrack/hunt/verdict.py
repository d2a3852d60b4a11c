"""The verdict of a hunt, as pure functions of its readings: per kind, a leak score and the growth per run, and
when the readings already say enough to stop repeating.

Verdict per kind, each scored with ``analysis.leak_score`` over the per-run readings (warm-ups already dropped):

* ``memory``: traced bytes; magnitude reference ``leak_reference`` bytes per run.
* ``native``: native memory (``untraced``), whoever allocated it (so: allocations tracemalloc cannot see, in C
  extensions); a run only counts as growing when it adds at least ``native_floor`` bytes, the floor that keeps
  page and arena noise from looking like a leak.
* ``fds`` and ``threads``: counts; one more per run is full magnitude, however few bytes that is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memtrack.hunt import native
from pytest_memtrack.tracking.analysis import leak_score

KINDS = ("memory", "native", "fds", "threads")


@dataclass(frozen=True)
class Reading:
    traced: int
    blocks: int
    rss: int
    fds: int
    threads: int
    objects: int
    #: Everything tracemalloc accounts for, whoever allocated it (the test, pytest, the hunt), plus tracemalloc's
    #: own bookkeeping: RSS growth beyond this is what nothing traced, i.e. native memory.
    accounted: int = 0
    #: Malloc's bytes in use beyond what tracemalloc accounts for (``native.native_bytes``); None off glibc.
    native: int | None = None
    #: Traced bytes whose caller the trace does not show (every recorded frame is the standard library's and the
    #: stack went deeper): neither the test's nor anyone else's until a deeper trace tells.
    unknown: int = 0
    #: ``unknown`` by traceback (``readings.unknown_key``): what a probe's shares apply to (``readings.charged``)
    unknown_by: Mapping[int, int] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, int]:
        return {"traced": self.traced, "blocks": self.blocks, "rss": self.rss, "fds": self.fds,
                "threads": self.threads, "objects": self.objects, "native": untraced(self)}


@dataclass(frozen=True)
class KindVerdict:
    leaking: bool
    score: float
    per_run: float

    def to_dict(self) -> dict[str, Any]:
        return {"leaking": self.leaking, "score": self.score, "per_run": self.per_run}


@dataclass(frozen=True)
class HuntParameters:
    limit: float = 0.1
    warmup_runs: int = 2
    max_runs: int = 10
    min_measured: int = 3
    leak_reference: float = 64 * 1024
    native_floor: float | None = None  # None: the floor of this platform's native reading
    time_budget: float | None = None  # seconds of wall time for the repeats of one test; None or 0: unlimited

    def __post_init__(self) -> None:
        if self.native_floor is None:
            object.__setattr__(self, "native_floor", float(native.DEFAULT_FLOOR))

    @property
    def floor(self) -> float:
        """The native floor in force (``native_floor``, which ``__post_init__`` has filled in)."""
        return float(self.native_floor if self.native_floor is not None else native.DEFAULT_FLOOR)


EMPTY_EVIDENCE: dict[str, list[Any]] = {"allocation_sites": [], "packages": [], "object_types": [],
                                        "new_threads": [], "new_fds": []}


@dataclass
class HuntResult:
    runs: int
    warmup_runs: int
    readings: list[Reading]
    kinds: dict[str, KindVerdict]
    evidence: dict[str, Any] = field(default_factory=lambda: {key: [] for key in EMPTY_EVIDENCE})
    error: str | None = None
    verdict_runs: int = 0  # executions it took to reach the verdict (runs also counts evidence and reported runs)
    budget_stop: bool = False  # the time budget ended the repeats (``error`` says how); not in the report
    probe_runs: int = 0  # runs under deep traces that told whose some of the bytes were (``readings.probe``)

    @property
    def score(self) -> float:
        return max((k.score for k in self.kinds.values()), default=0.0)

    @property
    def leaking(self) -> bool:
        return any(k.leaking for k in self.kinds.values())

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "verdict_runs": self.verdict_runs or self.runs, "warmup_runs": self.warmup_runs,
                "readings": [r.to_dict() for r in self.readings],
                "kinds": {name: verdict.to_dict() for name, verdict in self.kinds.items()},
                "evidence": self.evidence, "error": self.error}


def untraced(reading: Reading) -> int:
    """The ``native`` kind's reading: malloc's bytes in use beyond what tracemalloc accounts for (``native``),
    where glibc reports them; elsewhere RSS that tracemalloc does not account for.

    Not RSS minus the *test's* traced bytes: what pytest keeps per run (a report per ``subTest``, ~6 KiB each,
    held by the terminal reporter for the session) and tracemalloc's own tables for the blocks it traces are
    Python memory that is not the test's, and would read as a native leak of megabytes per run."""
    if reading.native is not None:
        return reading.native
    return reading.rss - (reading.accounted or reading.traced)


def _series_score(values: Sequence[float], reference: float, noise: float) -> tuple[float, float]:
    """(leak score, mean growth per run) of one kind's per-run values."""
    if len(values) < 2:
        return 0.0, 0.0
    history = [(float(i), float(v)) for i, v in enumerate(values)]
    per_run = (values[-1] - values[0]) / (len(values) - 1)
    return leak_score(history, reference_bytes=reference, noise_bytes=noise, warmup=0), float(per_run)


def judge(readings: Sequence[Reading], params: HuntParameters) -> dict[str, KindVerdict]:
    """The verdict of every kind from the measured readings (the first is the baseline)."""
    floor = params.floor
    series = {
        "memory": ([r.traced for r in readings], params.leak_reference, 0.0),
        "native": ([untraced(r) for r in readings], 4 * floor, floor),
        "fds": ([r.fds for r in readings], 1.0, 0.0),
        "threads": ([r.threads for r in readings], 1.0, 0.0),
    }
    verdicts = {}
    for kind, (values, reference, noise) in series.items():
        score, per_run = _series_score(values, reference, noise)
        verdicts[kind] = KindVerdict(leaking=score > params.limit, score=score, per_run=per_run)
    return verdicts


def _deltas(values: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(values, values[1:])]


def should_stop(readings: Sequence[Reading], params: HuntParameters) -> bool:
    """Pure stopping rule: enough evidence for a clear verdict either way."""
    measured = len(readings) - 1
    if measured < params.min_measured:
        return False
    verdicts = judge(readings, params)
    if all(v.score <= params.limit / 2 for v in verdicts.values()):
        # Clearly benign: for steady growth the score only rises with more runs by the sign test's
        # (k - sqrt k) / k, so a score under half the limit now cannot pass the limit within max_runs.
        return True
    traced = _deltas([r.traced for r in readings])
    fds = _deltas([r.fds for r in readings])
    threads = _deltas([r.threads for r in readings])
    native = _deltas([untraced(r) for r in readings])
    grew_every_run = {"memory": all(d > 0 for d in traced), "fds": all(d > 0 for d in fds),
                      "threads": all(d > 0 for d in threads), "native": all(d >= params.floor for d in native)}
    # Clearly leaking only with a score of twice the limit: a bounded cache that takes more runs to fill than the
    # warm-ups gave it grows steadily for a while, and more runs let its plateau show (toolz's suite has such tests).
    return any(grew_every_run[k] and verdicts[k].score > 2 * params.limit for k in KINDS)
