"""Deciding whether one test leaks, by running it again and again.

What is repeated: the whole test protocol (setup, call, teardown) of function-scoped fixtures, with the test's
wider-scoped fixtures kept alive, as pytest-leaks does — so an object a function-scoped fixture hands to the test
and takes back at teardown is never mistaken for a leak, while a module- or session-scoped fixture set up once is
not repeated at all. Each run's warnings stay with that run, as each test's do under pytest.

The loop: warm-ups, a baseline reading (``readings``), then one reading per measured run until the verdict
(``verdict``) is clear either way or ``max_runs`` executions were made; then the evidence (``evidence``).
Adaptive repetition, evidence both ways (``verdict.should_stop``, ``verdict.run_cap``): after ``min_measured``
measured runs the hunt stops early when what the test did, repeated to the end, could not reach half the limit
(clearly benign), or, after half the measured runs, when a kind grew on every run, scores above twice the limit and
is not slowing down (clearly leaking). A conviction is confirmed by more runs when the series slows or when all
that grew is a deque bounded by its ``maxlen`` (run until full); one or two growing steps earn runs to recur.

Time budget: under tracing an allocation-heavy test can run 10-20 times slower, so the repeats of one test stop once
they have taken ``time_budget`` seconds (checked after each run). With a baseline and at least one measured reading
the verdict uses the readings taken so far (fewer readings score lower: fewer than three growing steps score 0); before
that the hunt is inconclusive. Either way ``error`` says so and a ``HuntBudgetWarning`` names the budget; the
budget alone never fails a test.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable

from pytest_memtrack.hunt import caches
from pytest_memtrack.hunt.evidence import Baseline, gather_evidence, leak_holders, named_sizes_or_nothing
from pytest_memtrack.hunt.message import budget_message
from pytest_memtrack.hunt.names import sizes_again
from pytest_memtrack.hunt.readings import (
    TRACE_FRAMES,
    Probe,
    charged,
    open_fds,
    probe,
    shifted,
    take_reading,
    test_snapshot,
    thread_names,
    type_counts,
    unknown_grew,
    upper_bound,
)
from pytest_memtrack.hunt.retention import FULL_BOUNDED, runs_to_fill
from pytest_memtrack.hunt.verdict import (
    CONFIRM_RUNS,
    KINDS,
    HuntParameters,
    HuntResult,
    KindVerdict,
    Reading,
    confirmed,
    judge,
    run_cap,
    should_stop,
)

#: The clock the time budget is measured with when ``hunt`` is given none, looked up at each hunt: a test replaces
#: it to run the budget on a fake clock instead of sleeping.
budget_clock: Callable[[], float] = time.monotonic


class HuntBudgetWarning(UserWarning):
    """A hunt stopped at its time budget: its verdict rests on fewer runs than usual, or there is none."""


def over_budget(params: HuntParameters, started: float, clock: Callable[[], float]) -> float | None:
    """Seconds elapsed since ``started`` when they exceed the time budget, else None."""
    if not params.time_budget:
        return None
    elapsed = clock() - started
    return elapsed if elapsed > params.time_budget else None


def warn_budget(message: str) -> None:
    """Show ``message`` as a warning of the test being hunted (pytest lists it in its warnings summary). An
    ``ignore`` filter silences it; an ``error`` filter (``-W error``) only shows it: the budget never fails a test."""
    text = f"memtrack: {message}"
    try:
        warnings.warn(text, HuntBudgetWarning, stacklevel=3)
    except Warning:
        with warnings.catch_warnings():
            warnings.simplefilter("always", HuntBudgetWarning)
            warnings.warn(text, HuntBudgetWarning, stacklevel=3)


def isolated_warnings(run_once: Callable[[], bool]) -> Callable[[], bool]:
    """``run_once`` with its warnings kept to itself, as pytest keeps each test's.

    pytest records a test's warnings in a list for the whole of its protocol, which for a hunted test spans every
    run: each run's warnings would pile up there (one ``WarningMessage`` per warning, held by pytest until the
    test ends; and reported once per run), and the modules' ``__warningregistry__``, which pytest's reset of the
    filters around each test empties, would keep one entry per run for a message whose text differs per run
    ("object 0x7f... is deprecated"). The filters in force (ini, ``-W``, ``filterwarnings`` marks) are kept, so a
    warning turned into an error still fails the run.
    """
    def isolated() -> bool:
        with warnings.catch_warnings(record=True):
            return run_once()
    return isolated


#: ``names.named_sizes`` and the containers it measured (``Baseline.sizes``, ``Baseline.containers``).
NamedSizes = tuple[dict[tuple[str, ...], tuple[int, str]], dict[tuple[str, ...], object]]


def untraced_named_sizes() -> NamedSizes:
    """The named sizes for a hunt about to start tracing, taken before it does: a walk of every module's state
    costs ~30 ms untraced and ~230 ms under tracing (jinja2's test suite loaded)."""
    containers: dict[tuple[str, ...], object] = {}
    return named_sizes_or_nothing(containers), containers


def hunt(run_once: Callable[[], bool], params: HuntParameters, *, runs_done: int = 0,
         root: str | None = None, clock: Callable[[], float] | None = None, owns_tracing: bool = False,
         min_benign: int = 0, untraced_runs: int = 0, sizes: NamedSizes | None = None) -> HuntResult:
    """Repeat ``run_once`` (which returns whether the run passed) and decide whether it leaks.

    tracemalloc traces from the first run on, so what the warm-ups put in a bounded cache is traced too and its
    later evictions show as frees (objects allocated before tracing started are invisible when freed). Object
    types are counted over the unfrozen objects only — what the runs created — which keeps counting cheap even
    under tracing. ``params.time_budget`` bounds the wall time of the repeats (``clock`` measures it, by default
    ``budget_clock``).

    Traces keep ``TRACE_FRAMES`` frames: every frame costs each traced allocation. When the measured runs left bytes
    whose caller those frames do not show (``readings.unknown_grew``: allocated through a chain of standard library
    calls) and the tracing is the hunt's (it started it, or ``owns_tracing``: its caller did for it), a probe
    (``readings.probe``) runs the test twice more under deep traces (twice again deeper if need be) and tells which
    part of them the test's code allocated; the readings charge the test that part (``readings.charged``). Only such
    a test pays for
    deep traces, and the readings the verdict rests on are all taken alike. The hunt stops the tracing it owns after
    its last snapshot: the evidence is gathered untraced. ``min_benign``: measured runs before it may stop as
    benign (``verdict.should_stop``); ``untraced_runs``: runs of the test made before tracing began (the screen's),
    whose entries in a bounded deque are evicted unseen once it is full. ``sizes``: the named sizes, taken before
    the warm-ups (``untraced_named_sizes``), instead of under tracing at the first run in which memory grew.
    """
    result = _hunt(run_once, params, runs_done, root, budget_clock if clock is None else clock, owns_tracing,
                   min_benign, untraced_runs, sizes)
    if result.budget_stop and result.error:
        warn_budget(result.error)
    return result


def _hunt(run_once: Callable[[], bool], params: HuntParameters, runs_done: int, root: str | None,
          clock: Callable[[], float], owns_tracing: bool, min_benign: int, untraced_runs: int,
          sizes: NamedSizes | None) -> HuntResult:
    started = clock()
    runs = runs_done
    run_once = isolated_warnings(run_once)
    # Freezing moves every object that exists now to the permanent generation: each gc.collect() during the hunt
    # then only examines what the test's runs created (25 ms -> well under 1 ms a reading on a 150k-object heap),
    # and still frees the cycles those runs leave, which are made of new objects only. Earlier garbage is frozen
    # too (no full collection first: that alone cost 25 ms a test) and is collected after ``unfreeze``.
    # Before freezing: gc.get_objects() no longer sees frozen objects.
    caches.hunt_lru_caches[:] = caches.bounded_lru_caches()
    gc.freeze()
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(TRACE_FRAMES)
    owns_tracing = owns_tracing or started_tracing
    readings: list[Reading] = []
    error = None
    budget_stop = False
    after = None
    probed: Probe | None = None
    survivors: list[object] = []
    containers: dict[tuple[str, ...], object] = sizes[1] if sizes else {}  # ``Baseline.containers``
    try:
        for _ in range(max(0, params.warmup_runs - runs_done)):
            runs += 1
            if not run_once():
                return _inconclusive(runs, params, f"the test failed when repeated (run {runs})")
            elapsed = over_budget(params, started, clock)
            if elapsed is not None and runs < params.max_runs:
                result = _inconclusive(runs, params, budget_message(params, elapsed, runs, measured=0))
                result.budget_stop = True
                return result
        threads, fds = thread_names(), open_fds()
        caches.clear_interpreter_caches()  # as a reading does, so that the snapshot sees what a reading would
        gc.collect()
        baseline = Baseline(test_snapshot(), type_counts(), threads, fds, containers=containers)
        sizes_taken = sizes is not None
        if sizes:
            baseline.sizes, baseline.runs_before_baseline = sizes[0], max(0, params.warmup_runs - runs_done)
        # The baseline reading after what the evidence keeps (its snapshot: tens of KiB through malloc), so that the
        # first measured run's native step is not that.
        readings.append(take_reading())
        cap = params.max_runs
        confirm_from: int | None = None  # the reading from which the verdict is confirmed, when it must be
        while runs < cap:
            runs += 1
            if not run_once():
                error = f"the test failed when repeated (run {runs}); the verdict uses the runs before it"
                break
            readings.append(take_reading())
            if not sizes_taken and (bound := upper_bound(readings))[-1].traced > bound[-2].traced:
                # Python memory grew (in the first run, or later for growth that skips calls): note what every named
                # container holds now, to tell at the end which ones grew (60-80 ms under tracing, so only for a
                # test that grows), then read again so that what this left behind is not counted as the run's.
                baseline.sizes_at, sizes_taken = len(readings) - 1, True
                types_before = type_counts()
                baseline.sizes = named_sizes_or_nothing(baseline.containers)
                # Reading an instance's __dict__ makes CPython 3.11+ create it: those dicts are not the test's.
                baseline.types.update(type_counts() - types_before)
                # What the sizes keep (thousands of blocks, and tracemalloc's bookkeeping for them) is the hunt's,
                # not the run's: the baseline moves by it too, or the native reading's first step reads it.
                before, readings[-1] = readings[-1], take_reading()
                readings[:-1] = [shifted(reading, before, readings[-1]) for reading in readings[:-1]]
            bounded = upper_bound(readings)
            stop = should_stop(bounded, params, min_benign)
            if (stop or runs >= cap) and confirm_from is None and baseline.sizes and any(
                    v.leaking for v in judge(bounded, params).values()):
                # About to convict: when all that grew is a deque bounded by its maxlen, let it fill, then judge
                # the runs after it is full (``confirm_from``).
                since_sizes = len(readings) - 1 - baseline.sizes_at + baseline.runs_before_baseline
                fill = runs_to_fill(baseline.sizes, since_sizes, baseline.containers)
                if fill is not None and fill <= MAX_FILL_RUNS:
                    # Once full, each run evicts the oldest entry: those of the runs before tracing (their frees
                    # unseen) go first, one run's worth a run, whatever the pace.
                    confirm_from, stop = len(readings) - 1 + fill + untraced_runs, False
                    cap = max(cap, runs + fill + untraced_runs + CONFIRM_RUNS)
            if stop and (confirm_from is None or len(readings) - confirm_from > CONFIRM_RUNS):
                break
            if runs >= cap:  # at the end: a series that slows earns runs to confirm, a sparse one runs to recur
                extension = run_cap(bounded, params)
                if extension.confirm and confirm_from is None:
                    confirm_from = len(readings) - 1
                cap = max(cap, extension.cap)
            elapsed = over_budget(params, started, clock)
            if elapsed is not None and runs < cap:
                error = budget_message(params, elapsed, runs, measured=len(readings) - 1)
                budget_stop = True
                break
        grown: Counter[type] = Counter()
        if owns_tracing and not error and unknown_grew(readings):  # (a failed run or the budget: no probe)
            # The evidence of the measured runs first (the probe's runs are not among them): types before the
            # snapshot, whose own trace tuples (one per traced block) must not count as the test's; for the holder
            # search, while frozen, only what the runs left.
            grown, after, survivors = type_counts() - baseline.types, test_snapshot(), gc.get_objects()
            baseline.sizes_after = sizes_after(baseline)
            probed = probe(run_once)
            runs += probed.runs
        readings = charged(readings, probed)
        kinds = confirmed(readings, confirm_from, params)
        result = HuntResult(runs, params.warmup_runs, readings, kinds, error=error, verdict_runs=runs,
                            budget_stop=budget_stop, probe_runs=probed.runs if probed else 0)
        if result.score > 0 and after is None:
            # Types first: the snapshot's own trace tuples (one per traced block) must not count as the test's.
            grown = type_counts() - baseline.types
            after = test_snapshot()
            if result.kinds["memory"].score > 0:  # for the holder search: while frozen, only what the runs left
                survivors = gc.get_objects()
                baseline.sizes_after = sizes_after(baseline)
    finally:
        containers.clear()  # before the holder search: references from here are not the leak's
        if owns_tracing and tracemalloc.is_tracing():  # the evidence needs no more traces: gathered untraced
            tracemalloc.stop()
        gc.unfreeze()
        caches.hunt_lru_caches.clear()
    if result.score > 0:
        result.evidence = gather_evidence(baseline, after, grown, len(readings) - 1, root,
                                          probed.sites if probed else None)
        if result.kinds["memory"].score > 0:
            # The runs since the named sizes were taken are the ones their growth spans.
            since = readings[baseline.sizes_at or 1:]
            growing = sum(1 for a, b in zip(since, since[1:]) if b.traced > a.traced)
            holders = leak_holders(baseline, survivors, growing or len(since) - 1, grown, readings)
            result.evidence["holders"] = holders
            del survivors
            if holders and all(holder.get("note") == FULL_BOUNDED for holder in holders):
                # All it kept hangs from deques at their maxlen: each run's entry evicted one that was there before
                # tracing began (its free unseen), so the traced bytes grew by what was only replaced.
                memory = result.kinds["memory"]
                result.kinds["memory"] = KindVerdict(False, 0.0, memory.per_run)
    return result


def sizes_after(baseline: Baseline) -> dict[tuple[str, ...], tuple[int, str]] | None:
    """The named sizes measured again for the holder search, while ``baseline.containers`` still holds what they
    measured (None, for a walk then, when there is nothing to measure or measuring fails: evidence only)."""
    if not baseline.sizes or not baseline.containers:
        return None
    try:
        return sizes_again(baseline.sizes, baseline.containers)
    except Exception:
        return None


#: Runs a hunt adds at most for a bounded deque to fill before it judges what follows (``retention.runs_to_fill``).
MAX_FILL_RUNS = 40


def _inconclusive(runs: int, params: HuntParameters, error: str) -> HuntResult:
    return HuntResult(runs, params.warmup_runs, [], {k: KindVerdict(False, 0.0, 0.0) for k in KINDS}, error=error)
