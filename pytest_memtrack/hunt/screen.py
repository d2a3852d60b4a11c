"""The leak screen: a hunted test repeated first without tracemalloc, and hunted in full only if it kept something.

Tracing every allocation makes a run 2-20 times slower, and most tests keep nothing. The screen repeats the test on
the schedule of a hunt that finds nothing (the reported run, ``warmup_runs`` warm-ups, a baseline reading, then
``min_measured`` measured runs: the same calls a full hunt would measure) and reads after each run, with the
interpreter's caches emptied and a collection of what the runs created (the older heap is frozen, as in the hunt):

* ``sys.getallocatedblocks()``: every block CPython's allocators handed out and did not take back (pymalloc's small
  blocks and the large ones it passes on to malloc);
* glibc's bytes in use (``native.malloc_in_use``) and the resident pages of shared and file-backed mappings
  (``native.mapped_bytes``), or RSS where malloc cannot be read;
* gc-tracked objects, open file descriptors and threads.

From them, ``upper_bounds`` builds readings shaped as the hunt's, each kind an upper bound of what the hunt would
read: Python memory as ``BLOCK_BOUND`` bytes per allocated block plus malloc's bytes in use (a block kept is at most
512 bytes in pymalloc, a larger one is in malloc's figure), native memory as malloc's bytes plus the mapped pages
(all of malloc, not just what tracemalloc does not see), fds and threads as they are. The screen reads once before
its first repeat too, and passes a test steady (``steady_since``: no reading above that one, or above the one after
the first repeat, over ``min_measured`` repeats), or when the hunt's own benign rule (``verdict.clearly_benign``:
growth carried on to the longest hunt scores under half the limit) holds for those upper bounds and no kind would
convict: what the full hunt would then read on the same runs is no more, so it would have stopped there as benign
too. Anything beyond that — a single block kept every other run, a file descriptor, a page of a shared mapping —
sends the test to the full hunt (``screened_hunt``). That hunt starts tracing afresh (with one warm-up of its own:
the screen's runs were the test's warm-ups) and measures at least ``SPAN`` runs before it may call the test benign:
growth every k-th call that the screen saw in its measured runs (k up to ``warmup_runs + min_measured + 1``) recurs
within them.

A screened test's scores are those of the upper bounds (at most half the limit), its readings are not tracemalloc's
(``HuntResult.readings`` stays empty; ``screen_runs`` says how many runs the screen took).
"""

from __future__ import annotations

import array
import gc
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pytest_memtrack.hunt import caches, native, runner
from pytest_memtrack.hunt.message import screen_budget_message
from pytest_memtrack.hunt.readings import TRACE_FRAMES, fd_count
from pytest_memtrack.hunt.verdict import (
    KINDS,
    HuntParameters,
    HuntResult,
    KindVerdict,
    Reading,
    clearly_benign,
    growing_steps,
    judge,
    measured_cap,
)
from pytest_memtrack.tracking.analysis import MIN_GROWING_STEPS
from pytest_memtrack.tracking.process import rss_and_shared, thread_count

#: Bytes a block kept can hold at most without reaching malloc (CPython's SMALL_REQUEST_THRESHOLD).
BLOCK_BOUND = native.PYMALLOC_MAX_REQUEST


@dataclass(frozen=True)
class ScreenReading:
    blocks: int
    objects: int
    malloc: int | None  # glibc's bytes in use (None off glibc)
    mapped: int  # resident pages of shared and file-backed mappings (0 where they cannot be read)
    rss: int
    fds: int
    threads: int

    def to_dict(self) -> dict[str, int | None]:
        return {"blocks": self.blocks, "objects": self.objects, "malloc": self.malloc, "mapped": self.mapped,
                "rss": self.rss, "fds": self.fds, "threads": self.threads}


_FIELDS = len(ScreenReading.__dataclass_fields__)


def read_into(slots: array.array, index: int) -> None:
    """One reading into ``slots`` at ``index`` (a row of ``_FIELDS`` values; -1: no malloc reading), after the
    caches are emptied and the runs' garbage collected. The slots are allocated beforehand: a reading keeps no
    object, so the next one does not count this one's (a ``ScreenReading`` kept per run read as a block-and-object
    leak of every test)."""
    caches.clear_interpreter_caches()
    gc.collect()
    row = index * _FIELDS
    slots[row + 1] = len(gc.get_objects())
    malloc = native.malloc_in_use()
    slots[row + 2] = -1 if malloc is None else malloc
    rss, shared = rss_and_shared()
    # statm's file-backed and shared-memory resident pages: what ``native.mapped_bytes`` reads from smaps_rollup
    # (Rss - Anonymous), at a hundredth of its cost (reading smaps_rollup walks every mapping: ~1 ms).
    slots[row + 3] = shared
    slots[row + 4] = rss
    slots[row + 5] = fd_count()
    slots[row + 6] = thread_count()
    slots[row] = sys.getallocatedblocks()  # last: what the calls above allocated is freed


#: The fields that make up the upper bounds (``upper_bounds``): blocks, malloc, mapped pages, fds, threads.
_BOUND_FIELDS = (0, 2, 3, 5, 6)


def _none_above(slots: array.array, base: int, last: int) -> bool:
    """No reading from row ``base + 1`` to row ``last`` is above row ``base`` in any field of the bounds: then no
    bound ever rises above that reading, so every series the rule projects (its steps repeated) nets at most zero
    and scores 0 — ``decide`` would pass the test. Checked on the raw slots: most tests end here, at a few
    microseconds."""
    fields = _BOUND_FIELDS if slots[2] >= 0 else (*_BOUND_FIELDS, 4)  # no malloc reading: RSS stands for it
    return all(slots[row * _FIELDS + f] <= slots[base * _FIELDS + f] for row in range(base + 1, last + 1)
               for f in fields)


def unpack(slots: array.array, count: int, first: int = 0) -> list[ScreenReading]:
    """Rows ``first`` to ``first + count - 1`` of the slots as readings."""
    rows = []
    for index in range(first, first + count):
        blocks, objects, malloc, mapped, rss, fds, threads = slots[index * _FIELDS:(index + 1) * _FIELDS]
        rows.append(ScreenReading(blocks, objects, None if malloc < 0 else malloc, mapped, rss, fds, threads))
    return rows


#: Whether the screen runs on this interpreter. On CPython 3.10 the untraced readings of a test that keeps nothing
#: still grow (44 blocks and ~1 KiB of malloc at the fourth run, the interpreter's own), so the screen would send
#: every test on to the hunt and only add its runs: there the fully traced hunt runs from the reported run on, as
#: with ``--memtrack-trace-hunts``.
SCREENS = sys.version_info >= (3, 11)


#: A bound that falls by less than this from one reading to the next is held level: malloc's byte count wobbles by
#: tens of bytes between runs that keep nothing, and the sign test would count such a dip as a full step down,
#: cancelling a step up of kilobytes (growth in bursts of two calls read as +0, -16 B, +12 KiB, +12 KiB and passed).
#: Raising a bound keeps it an upper bound, so this only sends more tests to the hunt.
DIP = 1024


def _level_dips(values: list[int]) -> list[int]:
    held: list[int] = []
    for value in values:
        held.append(held[-1] if held and held[-1] - DIP < value < held[-1] else value)
    return held


def upper_bounds(readings: Sequence[ScreenReading]) -> list[Reading]:
    """The screen's readings as the hunt's, each kind an upper bound of the hunt's reading (module doc); a dip of
    less than ``DIP`` bytes is held level."""
    heaps = [r.malloc if r.malloc is not None else r.rss for r in readings]
    memory = _level_dips([BLOCK_BOUND * r.blocks + heap for r, heap in zip(readings, heaps)])
    native = _level_dips([heap + r.mapped for r, heap in zip(readings, heaps)])
    return [Reading(traced=m, blocks=r.blocks, rss=r.rss, fds=r.fds, threads=r.threads, objects=r.objects, native=n)
            for r, m, n in zip(readings, memory, native)]


def traced_bounds(readings: Sequence[ScreenReading]) -> list[Reading]:
    """``traced_screen``'s readings (the traced total in ``malloc``) as the hunt's: memory is the traced total, native
    memory was cleared by the untraced screen (held flat here)."""
    return [Reading(traced=r.malloc or 0, blocks=0, rss=0, fds=r.fds, threads=r.threads, objects=0, native=0)
            for r in readings]


def decide(readings: Sequence[ScreenReading], params: HuntParameters, traced: bool = False) -> bool | None:
    """Pure rule, after each measured run: True when the screen may pass the test (the hunt's benign rule holds for
    the upper bounds of what it kept, and no kind would convict), False when it must be hunted in full (a kind grew
    in ``MIN_GROWING_STEPS`` steps: growth that recurs; or the longest screen, ``longest``, is over), None to go on:
    a step or two of growth may be a one-off, which more runs dilute until the rule holds or the growth recurs."""
    measured = len(readings) - 1
    if measured < params.min_measured:
        return None
    bounds = traced_bounds(readings) if traced else upper_bounds(readings)
    if clearly_benign(bounds, params) and not any(v.leaking for v in judge(bounds, params).values()):
        return True
    if measured >= longest(params) or max(growing_steps(bounds, params).values()) >= MIN_GROWING_STEPS:
        return False
    return None


def longest(params: HuntParameters) -> int:
    """Measured runs a screen takes at most: the longest hunt's (``verdict.run_cap``), to which the benign rule
    projects what it saw."""
    return 2 * measured_cap(params)


#: Measured runs of a full hunt after the screen saw growth before that hunt may stop as benign: enough to see
#: again growth every k-th call that the screen's measured runs saw once (``span``).
def span(params: HuntParameters) -> int:
    return params.warmup_runs + params.min_measured + 1


@dataclass
class Screen:
    runs: int
    readings: list[ScreenReading]
    failed: bool  # a run failed (the screen stopped there)
    passed: bool  # ``decide`` passed the test
    elapsed: float | None = None  # the time budget ran out after this many seconds (the screen stopped there)


#: Settlings of malloc's thread cache before the screen's first reading, that reading's own included (``screen``).
FIRST_SETTLINGS = 4


def screen(run_once: Callable[[], bool], params: HuntParameters, *, runs_done: int = 0,
           clock: Callable[[], float] | None = None) -> Screen:
    """Repeat ``run_once`` untraced on a benign hunt's schedule, reading before the first repeat and after each
    one, until the test is passed (``steady_since`` the first reading or the first repeat's, or ``decide``), must
    be hunted, a run fails or the time budget runs out (``clock``: ``runner.budget_clock``)."""
    clock = clock or runner.budget_clock
    started = clock()
    # Bounded lru_caches are not emptied (finding them walks the whole heap, ~10 ms): a cache filling with the
    # runs' new keys reads as growth and sends the test to the hunt, which empties them.
    gc.freeze()  # as the hunt does: each collection examines only what the runs created
    runs = runs_done
    warmups = max(0, params.warmup_runs - runs_done)
    # Row 0: the reading before the first repeat; row i: after repeat i. Allocated beforehand: a reading keeps no
    # object. ``decide`` judges the rows from ``base`` on, the reading after the last warm-up.
    base = warmups
    slots = array.array("q", bytes(8 * _FIELDS * (1 + warmups + longest(params))))
    repeats = range(1, warmups + longest(params) + 1).__iter__()  # before the first reading: the iterator is kept
    passed: bool | None = False
    last = 0
    try:
        # The first repeat starts from malloc's state as every later one does, after a reading's settling of this
        # thread's cache (``native.settle_thread_cache``), here settled ``FIRST_SETTLINGS`` times in all: after the
        # reported run and pytest's reporting, one settling left malloc's bins otherwise than after a repeat, the
        # first repeat's allocations landed elsewhere, and malloc's figure moved by 16 B to a few KiB between the
        # first two readings of a test that keeps nothing (jinja2's suite: ~450 of its 909 tests took a repeat more;
        # settled twice ~200, four times ~110; each settling ~35 µs).
        if native.settle_thread_cache is not None:
            for _ in range(FIRST_SETTLINGS - 1):
                native.settle_thread_cache()
        read_into(slots, 0)
        for last in repeats:
            runs += 1
            if not run_once():
                return Screen(runs, unpack(slots, last - base, base) if last > base else [], True, False)
            read_into(slots, last)
            if steady_since(slots, 0, last, params) or steady_since(slots, 1, last, params):
                return Screen(runs, unpack(slots, last + 1), False, True)
            if last - base >= params.min_measured:
                # The decision's allocations are freed before the next run; the next reading does not see them.
                passed = True if _none_above(slots, base, last) \
                    else decide(unpack(slots, last - base + 1, base), params)
                if passed is not None:
                    break
            if (elapsed := runner.over_budget(params, started, clock)) is not None:
                return Screen(runs, unpack(slots, last - base + 1, base) if last >= base else [], False, False,
                              elapsed)
    finally:
        gc.unfreeze()
    return Screen(runs, unpack(slots, last - base + 1, base), False, bool(passed))


def steady_since(slots: array.array, first: int, last: int, params: HuntParameters) -> bool:
    """Pure rule, after each repeat: no reading from row ``first + 1`` to row ``last`` is above row ``first``, over at
    least ``min_measured`` repeats.

    Those are as many consecutive calls as the hunt measures, each of which kept nothing: growth every k-th call for
    k up to ``min_measured``, whatever its phase, falls on one of them, and a cache still filling shows. The screen
    asks it of two first rows:

    * row 0, the reading after the reported run (the test's first call, where first-call caches and lazy imports
      happen): a test that keeps nothing passes after ``min_measured`` repeats;
    * row 1, the reading after the first repeat, which may replace what the reported run left differently from
      the repeats after it (a dict of pytest's resized, a handler object replaced): such a test passes after one
      repeat more.

    Any other test goes on to the usual rule (``decide``) over the measured runs after all the warm-ups, which this
    does not change."""
    return last - first >= params.min_measured and _none_above(slots, first, last)


def traced_screen(run_once: Callable[[], bool], params: HuntParameters, clock: Callable[[], float],
                  started: float) -> Screen:
    """The second stage, for a test whose untraced screen saw only memory it cannot tell from a Python buffer grown
    in place (malloc's bytes grew, no block was kept): the same schedule and rule under tracemalloc with one frame,
    reading only the traced total (``get_traced_memory``: everyone's traced bytes, an upper bound of the test's; no
    snapshot), fds and threads. Tracing is on when it returns (``screened_hunt`` stops or keeps it)."""
    tracemalloc.start(1)
    gc.freeze()
    runs = 0
    slots = array.array("q", bytes(8 * 3 * (longest(params) + 1)))
    taken = 0
    passed: bool | None = False

    def read(index: int) -> None:
        caches.clear_interpreter_caches()
        gc.collect()
        slots[3 * index + 1] = fd_count()
        slots[3 * index + 2] = thread_count()
        slots[3 * index] = tracemalloc.get_traced_memory()[0]

    def rows(count: int) -> list[ScreenReading]:
        return [ScreenReading(0, 0, slots[3 * i], 0, 0, slots[3 * i + 1], slots[3 * i + 2]) for i in range(count)]

    try:
        for _ in range(params.warmup_runs):
            runs += 1
            if not run_once():
                return Screen(runs, [], True, False)
            if (elapsed := runner.over_budget(params, started, clock)) is not None:
                return Screen(runs, [], False, False, elapsed)
        measured = range(1, longest(params) + 1).__iter__()
        read(0)
        for taken in measured:
            runs += 1
            if not run_once():
                return Screen(runs, rows(taken), True, False)
            read(taken)
            if taken >= params.min_measured:
                passed = decide(rows(taken + 1), params, traced=True)
                if passed is not None:
                    break
            if (elapsed := runner.over_budget(params, started, clock)) is not None:
                return Screen(runs, rows(taken + 1), False, False, elapsed)
    finally:
        gc.unfreeze()
    return Screen(runs, rows(taken + 1), False, bool(passed))


def memory_only(readings: Sequence[ScreenReading], params: HuntParameters) -> bool:
    """Whether all the untraced screen could not clear is Python memory, and no block or object was kept: malloc's
    bytes grew as a buffer grown in place would (``traced_screen`` tells)."""
    bounds = upper_bounds(readings)
    return (len(readings) > 1 and readings[-1].blocks <= readings[0].blocks
            and readings[-1].objects <= readings[0].objects
            and clearly_benign(bounds, params, [kind for kind in KINDS if kind != "memory"]))


def screened_hunt(run_once: Callable[[], bool], params: HuntParameters, *, root: str | None = None,
                  clock: Callable[[], float] | None = None) -> HuntResult:
    """The screen, then, unless it passed the test, the full hunt (``runner.hunt``) under tracing it owns, with what
    is left of the time budget.

    Called without tracemalloc tracing. The runs of both count in ``runs`` and ``verdict_runs``."""
    clock = clock or runner.budget_clock
    started = clock()
    found = screen(runner.isolated_warnings(run_once), params, clock=clock)
    left = None if not params.time_budget else params.time_budget - (clock() - started)
    if found.failed:
        error = f"the test failed when repeated (run {found.runs}, before any traced run): no leak verdict"
        result = _no_verdict(found.runs, params, error)
    elif found.passed:
        result = HuntResult(found.runs, params.warmup_runs, [], judge(upper_bounds(found.readings), params),
                            verdict_runs=found.runs, screened=True)
    elif found.elapsed is not None or (left is not None and left <= 0):
        elapsed = found.elapsed if found.elapsed is not None else clock() - started
        result = _no_verdict(found.runs, params, screen_budget_message(params, elapsed, found.runs))
        result.budget_stop = True
        runner.warn_budget(screen_budget_message(params, elapsed, found.runs))
    else:
        result = _second_stage(run_once, params, found, root, clock, started)
    result.screen_runs = max(result.screen_runs, found.runs)
    result.screen_readings = [reading.to_dict() for reading in found.readings]
    return result


def _second_stage(run_once: Callable[[], bool], params: HuntParameters, found: Screen, root: str | None,
                  clock: Callable[[], float], started: float) -> HuntResult:
    """After an untraced screen that did not pass the test: the traced screen when all it saw was memory without a
    block kept (``memory_only``), then, unless that passed it, the full hunt with what is left of the budget."""
    runs = found.runs
    try:
        if memory_only(found.readings, params):
            second = traced_screen(runner.isolated_warnings(run_once), params, clock, started)
            runs += second.runs
            if second.failed or second.elapsed is not None:
                tracemalloc.stop()
                message = (f"the test failed when repeated (run {runs}, before any traced run): no leak verdict"
                           if second.failed else screen_budget_message(params, second.elapsed or 0.0, runs))
                result = _no_verdict(runs, params, message)
                if not second.failed:
                    result.budget_stop = True
                    runner.warn_budget(message)
                result.screen_runs = runs
                return result
            if second.passed:
                tracemalloc.stop()
                result = HuntResult(runs, params.warmup_runs, [], judge(traced_bounds(second.readings), params),
                                    verdict_runs=runs, screened=True, screen_runs=runs)
                return result
            tracemalloc.stop()  # the hunt traces afresh, with its own frames
        left = None if not params.time_budget else params.time_budget - (clock() - started)
        if left is not None and left <= 0:
            message = screen_budget_message(params, clock() - started, runs)
            result = _no_verdict(runs, params, message)
            result.budget_stop = True
            runner.warn_budget(message)
            result.screen_runs = runs
            return result
    except BaseException:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        raise
    sizes = runner.untraced_named_sizes()
    tracemalloc.start(TRACE_FRAMES)
    # One traced warm-up: the screen's runs were the test's warm-ups; this one only has what each run replaces
    # traced before the baseline, so that its replacement reads as a free and an allocation. (An object that lives
    # two runs can still read as a one-off first step, which no rule convicts: growth must recur.)
    hunted = replace(params, time_budget=left, warmup_runs=min(1, params.warmup_runs))
    result = runner.hunt(run_once, hunted, root=root, owns_tracing=True, clock=clock,
                         min_benign=span(params), untraced_runs=runs + 1, sizes=sizes)  # + the reported run
    result.runs += runs
    result.verdict_runs = (result.verdict_runs or result.runs - runs) + runs
    result.screen_runs = runs
    return result


def _no_verdict(runs: int, params: HuntParameters, error: str) -> HuntResult:
    return HuntResult(runs, params.warmup_runs, [], {k: KindVerdict(False, 0.0, 0.0) for k in KINDS}, error=error,
                      verdict_runs=runs)
