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
(all of malloc, not just what tracemalloc does not see), fds and threads as they are. The screen passes a test
(``kept_nothing``) when the hunt's own benign rule (``verdict.clearly_benign``: growth carried on to the longest
hunt scores under half the limit) holds for those upper bounds and no kind would convict: what the full hunt would
then read on the same runs is no more, so it would have stopped there as benign too. Anything beyond that — a
single block kept every other run, a file descriptor, a page of a shared mapping — sends the test to the full
hunt (``screened_hunt``). That hunt starts tracing afresh (with its warm-ups) and measures at least ``SPAN`` runs
before it may call the test benign: growth every k-th call that the screen saw in its measured runs (k up to
``warmup_runs + min_measured + 1``) recurs within them.

A screened test's scores are those of the upper bounds (at most half the limit), its readings are not tracemalloc's
(``HuntResult.readings`` stays empty; ``screen_runs`` says how many runs the screen took).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_memtrack.hunt import caches, native, runner
from pytest_memtrack.hunt.readings import TRACE_FRAMES, fd_count, process
from pytest_memtrack.hunt.verdict import KINDS, HuntParameters, HuntResult, KindVerdict, Reading, clearly_benign, judge

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


def take_screen_reading() -> ScreenReading:
    caches.clear_interpreter_caches()
    gc.collect()
    objects = len(gc.get_objects())
    return ScreenReading(blocks=sys.getallocatedblocks(), objects=objects, malloc=native.malloc_in_use(),
                         mapped=native.mapped_bytes() or 0, rss=process.memory_info().rss, fds=fd_count(),
                         threads=process.num_threads())


def upper_bounds(readings: Sequence[ScreenReading]) -> list[Reading]:
    """The screen's readings as the hunt's, each kind an upper bound of the hunt's reading (module doc)."""
    bounds = []
    for r in readings:
        heap = r.malloc if r.malloc is not None else r.rss
        bounds.append(Reading(traced=BLOCK_BOUND * r.blocks + heap, blocks=r.blocks, rss=r.rss, fds=r.fds,
                              threads=r.threads, objects=r.objects, native=heap + r.mapped))
    return bounds


def kept_nothing(readings: Sequence[ScreenReading], params: HuntParameters) -> bool:
    """Pure rule: the screen's measured runs (after the baseline ``readings[0]``) kept nothing the hunt could count
    against the test — its benign rule holds for the upper bounds and no kind would convict."""
    if len(readings) - 1 < params.min_measured:
        return False
    bounds = upper_bounds(readings)
    return clearly_benign(bounds, params) and not any(v.leaking for v in judge(bounds, params).values())


#: Measured runs of a full hunt after the screen saw growth before that hunt may stop as benign: enough to see
#: again growth every k-th call that the screen's measured runs saw once (``span``).
def span(params: HuntParameters) -> int:
    return params.warmup_runs + params.min_measured + 1


@dataclass
class Screen:
    runs: int
    readings: list[ScreenReading]
    failed: bool  # a run failed (the screen stopped there)


def screen(run_once: Callable[[], bool], params: HuntParameters, *, runs_done: int = 0) -> Screen:
    """Repeat ``run_once`` untraced on a benign hunt's schedule, reading after the warm-ups and each measured run."""
    caches.hunt_lru_caches[:] = caches.bounded_lru_caches()
    gc.freeze()  # as the hunt does: each collection examines only what the runs created
    runs = runs_done
    readings: list[ScreenReading] = []
    try:
        for _ in range(max(0, params.warmup_runs - runs_done)):
            runs += 1
            if not run_once():
                return Screen(runs, readings, True)
        readings.append(take_screen_reading())
        for _ in range(params.min_measured):
            runs += 1
            if not run_once():
                return Screen(runs, readings, True)
            readings.append(take_screen_reading())
    finally:
        gc.unfreeze()
        caches.hunt_lru_caches.clear()
    return Screen(runs, readings, False)


def screened_hunt(run_once: Callable[[], bool], params: HuntParameters, *, root: str | None = None) -> HuntResult:
    """The screen, then, unless it passed the test, the full hunt (``runner.hunt``) under tracing it owns.

    Called without tracemalloc tracing. The runs of both count in ``runs`` and ``verdict_runs``."""
    found = screen(runner.isolated_warnings(run_once), params)
    if found.failed:
        error = f"the test failed when repeated (run {found.runs}, before any traced run): no leak verdict"
        result = HuntResult(found.runs, params.warmup_runs, [], {k: KindVerdict(False, 0.0, 0.0) for k in KINDS},
                            error=error, verdict_runs=found.runs)
    elif kept_nothing(found.readings, params):
        result = HuntResult(found.runs, params.warmup_runs, [], judge(upper_bounds(found.readings), params),
                            verdict_runs=found.runs, screened=True)
    else:
        tracemalloc.start(TRACE_FRAMES)
        result = runner.hunt(run_once, params, root=root, owns_tracing=True, min_benign=span(params),
                             untraced_runs=found.runs + 1)  # the reported run too
        result.runs += found.runs
        result.verdict_runs = (result.verdict_runs or result.runs - found.runs) + found.runs
    result.screen_runs = found.runs
    result.screen_readings = [reading.to_dict() for reading in found.readings]
    return result
