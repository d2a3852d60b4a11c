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
from pytest_memtrack.tracking.analysis import MIN_GROWING_STEPS, leak_score

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
    screen: bool = True  # repeat untraced first, hunt under tracing only what kept something (``screen``)

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
    screen_runs: int = 0  # runs of the untraced screen before any traced run (``screen``), in ``runs`` too
    screened: bool = False  # the screen passed the test: no traced run, scores are the screen's upper bounds
    screen_readings: list[dict[str, int | None]] = field(default_factory=list)

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
                "evidence": self.evidence, "error": self.error,
                **({"screen": {"runs": self.screen_runs, "passed": self.screened, "readings": self.screen_readings}}
                   if self.screen_runs else {})}


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
    return judge_series(_series(readings), params)


def judge_series(series: Mapping[str, Sequence[float]], params: HuntParameters) -> dict[str, KindVerdict]:
    """The verdict of each kind in ``series`` from its per-run values."""
    floor = params.floor
    scales = {"memory": (params.leak_reference, 0.0), "native": (4 * floor, floor), "fds": (1.0, 0.0),
              "threads": (1.0, 0.0)}
    verdicts = {}
    for kind, values in series.items():
        reference, noise = scales[kind]
        score, per_run = _series_score(values, reference, noise)
        verdicts[kind] = KindVerdict(leaking=score > params.limit, score=score, per_run=per_run)
    return verdicts


def _deltas(values: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(values, values[1:])]


#: Runs a hunt adds to confirm a conviction when its series slows down at the end (``run_cap``), or after a bounded
#: deque filled: enough steps for the sign test to show growth that goes on.
CONFIRM_RUNS = 5


def _series(readings: Sequence[Reading]) -> dict[str, list[float]]:
    """Each kind's per-run values. The native kind starts at the first measured reading: the first measured run's
    step carries what the hunt itself allocates through malloc the first time it repeats a test (10-20 KiB, more
    on pytest 7.4 than on 9; nothing the test keeps), which a sign test over a few steps would take for growth."""
    native_from = 1 if len(readings) > 2 else 0
    return {"memory": [float(r.traced) for r in readings],
            "native": [float(untraced(r)) for r in readings[native_from:]],
            "fds": [float(r.fds) for r in readings], "threads": [float(r.threads) for r in readings]}


def _noise(kind: str, params: HuntParameters) -> float:
    return params.floor if kind == "native" else 0.0


def _projected(values: Sequence[float], measured: int) -> list[float]:
    """``values`` carried on to ``measured`` steps by repeating its steps in turn: what the series would read at
    the end of the hunt if the test went on doing what it did (every k-th call growth included)."""
    deltas = _deltas(values)
    projected = list(values)
    for i in range(max(0, measured - len(deltas))):
        projected.append(projected[-1] + deltas[i % len(deltas)])
    return projected


def slowing(values: Sequence[float], noise: float = 0.0) -> bool:
    """Whether growth is slowing down towards a plateau: the last step grew less than half the median of the
    steps before it (a bounded cache's last free slots, a table that stops resizing)."""
    deltas = [d for d in _deltas(values) if d > noise or d < -noise]
    if len(deltas) < 3:
        return False
    earlier = sorted(deltas[:-1])
    return deltas[-1] < earlier[len(earlier) // 2] / 2


def measured_cap(params: HuntParameters) -> int:
    return max(1, params.max_runs - params.warmup_runs)


def min_to_convict(params: HuntParameters) -> int:
    """Measured runs before a hunt may stop early as clearly leaking: half of those ``max_runs`` allows, at least
    ``min_measured + 1``; so raising ``max_runs`` gives a slow-filling cache the runs to show its plateau."""
    return max(params.min_measured + 1, measured_cap(params) // 2)


def clearly_benign(readings: Sequence[Reading], params: HuntParameters, kinds: Sequence[str] = KINDS) -> bool:
    """What the test did in these readings, carried on to the longest hunt ``run_cap`` may allow (``_projected``),
    scores under half the limit for every kind: the benign half of ``should_stop``, also the leak screen's rule
    (``screen.decide``), for ``kinds`` only if given."""
    cap = measured_cap(params)
    projected = judge_series({k: _projected(v, 2 * cap) for k, v in _series(readings).items() if k in kinds},
                             params)
    return all(v.score <= params.limit / 2 for v in projected.values())


def growing_steps(readings: Sequence[Reading], params: HuntParameters) -> dict[str, int]:
    """Per kind, the steps between readings that grew beyond the kind's noise."""
    return {kind: sum(1 for d in _deltas(values) if d > _noise(kind, params))
            for kind, values in _series(readings).items()}


def should_stop(readings: Sequence[Reading], params: HuntParameters, min_benign: int = 0) -> bool:
    """Pure stopping rule: evidence either way.

    Clearly benign: what the test did so far, carried on to the longest hunt ``run_cap`` may allow (``_projected``:
    its steps repeated in turn, so growth every k-th call counts as often as it would recur), scores under half the
    limit for every kind; a test that grew at all keeps being repeated until its growth is shown not to recur.

    Clearly leaking: after ``min_to_convict`` measured runs, a kind grew on every run, scores over twice the limit,
    and is not ``slowing`` towards a plateau (a bounded cache filling its last slots grows less and less).

    ``min_benign``: measured runs before it may stop as benign (a hunt after the screen saw growth measures long
    enough to see growth every k-th call again, ``screen.SPAN``)."""
    measured = len(readings) - 1
    if measured < params.min_measured:
        return False
    if measured >= min_benign and clearly_benign(readings, params):
        return True
    if measured < min_to_convict(params):
        return False
    series = _series(readings)
    verdicts = judge_series(series, params)
    for kind, values in series.items():
        noise = _noise(kind, params)
        steps = _deltas(values)
        grew_every_run = all(d >= params.floor for d in steps) if kind == "native" else all(d > 0 for d in steps)
        if grew_every_run and verdicts[kind].score > 2 * params.limit and not slowing(values, noise):
            return True
    return False


@dataclass(frozen=True)
class Extension:
    cap: int  # executions the hunt may take
    confirm: bool  # the verdict is to be confirmed by the runs from here on (``confirmed``)


def run_cap(readings: Sequence[Reading], params: HuntParameters) -> Extension:
    """Executions the hunt may take with these readings so far, asked when it reached ``max_runs``.

    * A kind that would convict but is ``slowing`` at the end gets ``CONFIRM_RUNS`` more runs, and the verdict is
      confirmed by them: a cache nearly full shows its plateau, a leak goes on growing.
    * A kind whose growth is sparse (it grew in fewer than half the measured runs) and would convict, or that grew
      in one or two steps only and would convict if they recurred, gets as many measured runs again as
      ``max_runs`` gave: growth every third or fourth call shows more steps, while a one-off step, or the
      occasional resize of a table that churns through keys without growing (seen in marshmallow's suite: steps of
      2.5, 2.4 and 2.2 KiB at runs 1, 2 and 7), stays alone.
    """
    cap, confirm = params.max_runs, False
    series = _series(readings)
    verdicts = judge_series(series, params)
    measured = measured_cap(params)
    for kind, values in series.items():
        noise = _noise(kind, params)
        if verdicts[kind].leaking and slowing(values, noise):
            cap, confirm = max(cap, params.max_runs + CONFIRM_RUNS), True
        steps = _deltas(values)
        ups = sum(1 for d in steps if d > noise)
        sparse = 0 < ups and 2 * ups < len(steps)
        if (sparse and verdicts[kind].leaking) or (0 < ups < MIN_GROWING_STEPS and judge_series(
                {kind: _projected(values, 2 * measured)}, params)[kind].leaking):
            cap = max(cap, params.max_runs + measured)
    return Extension(cap, confirm)


def confirmed(readings: Sequence[Reading], confirm_from: int | None,
              params: HuntParameters) -> dict[str, KindVerdict]:
    """The verdict, where one had to be confirmed (``confirm_from``: a series that slowed, a bounded deque that
    had to fill first): a kind convicted over the whole hunt stays convicted only if the runs from
    ``confirm_from`` on are a leak by themselves; growth that stopped there was a plateau being reached."""
    verdicts = judge(readings, params)
    if confirm_from is None or len(readings) - confirm_from < 3:
        return verdicts
    tail = judge(readings[confirm_from:], params)
    return {kind: tail[kind] if verdict.leaking and not tail[kind].leaking else verdict
            for kind, verdict in verdicts.items()}
