"""Deciding whether one test leaks, by running it again and again, and gathering the evidence.

What is repeated: the whole test protocol (setup, call, teardown) of function-scoped fixtures, with the test's
wider-scoped fixtures kept alive, as pytest-leaks does — so an object a function-scoped fixture hands to the test
and takes back at teardown is never mistaken for a leak, while a module- or session-scoped fixture set up once is
not repeated at all. The garbage collector runs before every reading.

Readings after each run: tracemalloc's traced bytes (Python allocations; tracing is on only while hunting),
``sys.getallocatedblocks()`` (what CPython's refleak hunter counts), RSS (psutil), open file descriptors
(psutil ``num_fds``, or ``num_handles`` on Windows), OS threads (psutil ``num_threads``) and gc-tracked objects.
Works on release builds: nothing here needs ``sys.gettotalrefcount``. Before each reading the interpreter's type
attribute cache and the standard library's bounded memoization caches are emptied, as CPython's refleak hunter does
(``clear_interpreter_caches``), and each run's warnings stay with that run, as each test's do under pytest: what is
left is what the test's code keeps.

Verdict per kind, each scored with ``analysis.leak_score`` over the per-run readings (warm-ups already dropped):

* ``memory``: traced bytes; magnitude reference ``leak_reference`` bytes per run.
* ``native``: RSS growth not explained by traced growth, whoever allocated it (so: allocations tracemalloc cannot
  see, in C extensions); a run only counts as growing when it adds at least ``native_floor`` bytes — the floor that
  keeps RSS page and arena noise (tens to hundreds of KiB) from looking like a leak.
* ``fds`` and ``threads``: counts; one more per run is full magnitude, however few bytes that is.

Adaptive repetition: after ``min_measured`` measured runs the hunt stops early when nothing grew at all (clearly
benign) or when a kind grew on every run and already scores above the limit (clearly leaking); otherwise it runs
more, up to ``max_runs`` executions in all.

Time budget: under tracing an allocation-heavy test can run 10-20 times slower, so the repeats of one test stop once
they have taken ``time_budget`` seconds (checked after each run). With a baseline and at least one measured reading
the verdict uses the readings taken so far (fewer readings score lower: a single measured run scores 0); before
that the hunt is inconclusive. Either way ``error`` says so and a ``HuntBudgetWarning`` names the budget; the
budget alone never fails a test.
"""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import threading
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from pytest_memtrack import native
from pytest_memtrack.analysis import leak_score
from pytest_memtrack.attribution import file_index
from pytest_memtrack.retention import LRU_CACHE_TYPE, find_holders, grown_holders, named_sizes
from pytest_memtrack.units import format_bytes

KINDS = ("memory", "native", "fds", "threads")
_process = psutil.Process()
_OWN_FILES = (os.path.dirname(os.path.abspath(__file__)) + os.sep, tracemalloc.__file__,
              os.path.dirname(os.path.abspath(psutil.__file__)) + os.sep)


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


BUDGET_OPTION = "--memtrack-hunt-budget"
#: The clock the time budget is measured with when ``hunt`` is given none, looked up at each hunt: a test replaces
#: it to run the budget on a fake clock instead of sleeping.
budget_clock: Callable[[], float] = time.monotonic


class HuntBudgetWarning(UserWarning):
    """A hunt stopped at its time budget: its verdict rests on fewer runs than usual, or there is none."""


def _over_budget(params: HuntParameters, started: float, clock: Callable[[], float]) -> float | None:
    """Seconds elapsed since ``started`` when they exceed the time budget, else None."""
    if not params.time_budget:
        return None
    elapsed = clock() - started
    return elapsed if elapsed > params.time_budget else None


def _warn_budget(message: str) -> None:
    """Show ``message`` as a warning of the test being hunted (pytest lists it in its warnings summary). An
    ``ignore`` filter silences it; an ``error`` filter (``-W error``) only shows it: the budget never fails a test."""
    text = f"memtrack: {message}"
    try:
        warnings.warn(text, HuntBudgetWarning, stacklevel=3)
    except Warning:
        with warnings.catch_warnings():
            warnings.simplefilter("always", HuntBudgetWarning)
            warnings.warn(text, HuntBudgetWarning, stacklevel=3)


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


def _fd_count() -> int:
    try:
        return _process.num_fds()
    except AttributeError:  # Windows
        return _process.num_handles()


#: Allocations made by the hunt itself (readings, snapshots, psutil calls) are not the test's.
_EXCLUDE = [tracemalloc.Filter(False, path + "*", all_frames=True) for path in _OWN_FILES] + [
    tracemalloc.Filter(False, tracemalloc.__file__, all_frames=True)]
TRACE_FRAMES = 3  # enough to tell whose allocation it is (ours, pytest's, the test's); 8 frames cost 3x more


_STDLIB = tuple({os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")})
#: The test harness: what pytest, its plugins and xdist keep per run (a finalizer registered on a session fixture,
#: a report section) is bookkeeping that ends with the session, not the test's leak.
_HARNESS_PACKAGES = ("_pytest", "pytest", "pluggy", "xdist", "execnet", "pytest_memtrack")
_origin_cache: dict[str, str] = {}


def _origin(filename: str) -> str:
    """'self' (the hunt's own code and what it calls: psutil, tracemalloc), 'harness', 'neutral' (stdlib,
    generated code) or 'code' (the project and its dependencies)."""
    origin = _origin_cache.get(filename)
    if origin is None and filename.startswith(_OWN_FILES):
        origin = _origin_cache[filename] = "self"
    if origin is None:
        module = file_index.module_for(filename) if not filename.startswith("<") else None
        package = module.partition(".")[0] if module else ""
        if package in _HARNESS_PACKAGES or package.startswith("pytest_"):
            origin = "harness"
        elif filename.startswith(("<", *_STDLIB)) and "site-packages" not in filename:
            origin = "neutral"
        else:
            origin = "code"
        _origin_cache[filename] = origin
    return origin


def _owned_by_test(frames: Sequence[tuple[str, int]], total_frames: int | None = None) -> bool:
    """An allocation belongs to the test unless the hunt made it (any frame is ours) or the first non-stdlib
    frame (innermost first) is the harness. When every recorded frame is stdlib and the stack went deeper than
    what was recorded, the caller is unknown: not counted (the test's own calls into the stdlib are within
    ``TRACE_FRAMES`` of a test frame)."""
    decided = None
    for filename, _ in frames:
        origin = _origin_cache.get(filename) or _origin(filename)
        if origin == "self":
            return False
        if decided is None and origin != "neutral":
            decided = origin == "code"
    if decided is None:
        return total_frames is None or total_frames <= len(frames)
    return decided


def _test_traces(raw: list[tuple]) -> list[tuple]:
    return [trace for trace in raw if _owned_by_test(trace[2], trace[3] if len(trace) > 3 else None)]


def test_snapshot() -> tracemalloc.Snapshot:
    """A snapshot of what the test's code (and the libraries it calls) allocated, without the hunt's and
    pytest's own allocations."""
    snapshot = tracemalloc.take_snapshot()
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:  # not CPython's layout: fall back to tracemalloc's (slower) filters
        return snapshot.filter_traces(_EXCLUDE)
    return tracemalloc.Snapshot(_test_traces(raw), snapshot.traceback_limit)


def _traced_and_native() -> tuple[int, int | None]:
    """(the test's traced bytes, native bytes by malloc's reading or None) from one snapshot."""
    if not tracemalloc.is_tracing():
        return 0, native.native_bytes(native.malloc_state(), ())
    state = native.malloc_state()  # before the snapshot, which is not in it
    snapshot = tracemalloc.take_snapshot()
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:
        return sum(trace.size for trace in snapshot.filter_traces(_EXCLUDE).traces), None
    traced = sum(trace[1] for trace in _test_traces(raw))
    return traced, native.native_bytes(state, [trace[1] for trace in raw])


def _type_cache_clearer() -> Callable[[], Any] | None:
    """CPython's function that empties its type attribute cache (None where there is none)."""
    return getattr(sys, "_clear_internal_caches", None) or getattr(sys, "_clear_type_cache", None)


_clear_type_cache = _type_cache_clearer()


def _typing_cleanups() -> None:
    for cleanup in getattr(sys.modules["typing"], "_cleanups", ()):
        cleanup()


#: Bounded memoization caches of the standard library, emptied before every reading as CPython's own refleak hunter
#: does (``Lib/test/libregrtest/utils.py: clear_caches``), by module: each keeps what a test computed from its
#: arguments (compiled patterns, ``Optional[C]`` for a class ``C`` defined per call, ...) until evicted hundreds
#: of calls later, so it grows for the whole hunt when every run brings new arguments, then stops. Only modules
#: already imported are touched; emptying them costs the next calls a recomputation, never a behaviour change.
_STDLIB_CACHES: dict[str, Callable[[], Any]] = {
    "re": lambda: sys.modules["re"].purge(),
    "typing": _typing_cleanups,
    "fnmatch": lambda: sys.modules["fnmatch"]._compile_pattern.cache_clear(),
    "struct": lambda: sys.modules["struct"]._clearcache(),
    "urllib.parse": lambda: sys.modules["urllib.parse"].clear_cache(),
    "_strptime": lambda: sys.modules["_strptime"]._regex_cache.clear(),
}


#: The bounded ``functools.lru_cache`` caches that existed when the current hunt started (see ``bounded_lru_caches``).
_hunt_lru_caches: list[Any] = []


def bounded_lru_caches() -> list[Any]:
    """Every ``functools.lru_cache`` with a ``maxsize`` alive now, whoever defined it.

    Like the standard library's caches, a bounded memoization cache grows while new arguments arrive and stops at
    its ``maxsize`` (128 by default: more calls than a hunt makes), so it reads as steady growth for a whole hunt
    and is never a leak. Emptied before each reading, only what the test keeps elsewhere remains. An unbounded one
    (``maxsize=None``, ``functools.cache``) is left alone: growing without end is what a leak is."""
    found = []
    for obj in gc.get_objects():
        if type(obj) is LRU_CACHE_TYPE:
            try:
                if obj.cache_info().maxsize is not None:
                    found.append(obj)
            except Exception:
                continue
    return found


def clear_interpreter_caches() -> None:
    """Empty the interpreter's and the standard library's caches that keep objects the test allocated, before a
    reading, so that what a reading counts is what the test's own code keeps.

    CPython's type attribute cache (4096 slots, ``_PyType_Lookup``) keeps a strong reference to the *name* of each
    attribute looked up on a type. A name built at run time (``getattr(obj, f"spec_for_{name}")``, a qualname or
    global name read back by ``pickle.loads``, ``"{inst.func.__name__}".format(inst=...)``) is a new string every
    run, so the cache holds one more ~50-byte string per lookup until its slots are all taken (hundreds of runs),
    traced at the test's line: growth that looks steady over a hunt and is bounded. Emptying the cache only costs
    the next lookups a refill.
    """
    for cache in _hunt_lru_caches:
        cache.cache_clear()
    modules = sys.modules
    for name, clear in _STDLIB_CACHES.items():
        if name in modules:
            try:
                clear()
            except Exception:  # a private helper that moved in this Python version: that cache stays as it is
                pass
    if _clear_type_cache is not None:  # last: the clearing above looks attributes up too
        _clear_type_cache()


def _accounted() -> int:
    if not tracemalloc.is_tracing():
        return 0
    return tracemalloc.get_traced_memory()[0] + tracemalloc.get_tracemalloc_memory()


def take_reading() -> Reading:
    clear_interpreter_caches()
    gc.collect()
    # Without malloc's reading, native is RSS beyond this: read before the snapshot below allocates.
    accounted = _accounted() if native.NATIVE_READING == "rss" else 0
    traced, native_reading = _traced_and_native()
    return Reading(traced=traced, blocks=sys.getallocatedblocks(), rss=_process.memory_info().rss,
                   fds=_fd_count(), threads=_process.num_threads(), objects=len(gc.get_objects()),
                   accounted=accounted, native=native_reading)


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
    series = {
        "memory": ([r.traced for r in readings], params.leak_reference, 0.0),
        "native": ([untraced(r) for r in readings], 4 * params.native_floor, params.native_floor),
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
                      "threads": all(d > 0 for d in threads), "native": all(d >= params.native_floor for d in native)}
    # Clearly leaking only with a score of twice the limit: a bounded cache that takes more runs to fill than the
    # warm-ups gave it grows steadily for a while, and more runs let its plateau show (toolz's suite has such tests).
    return any(grew_every_run[k] and verdicts[k].score > 2 * params.limit for k in KINDS)


def _thread_names() -> dict[int, str]:
    return {t.ident or 0: f"{t.name} ({getattr(t, '_target', None).__qualname__})"
            if getattr(getattr(t, "_target", None), "__qualname__", None) else t.name
            for t in threading.enumerate()}


def _open_fds() -> dict[int, str]:
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return {}
    found = {}
    for name in os.listdir(fd_dir):
        try:
            found[int(name)] = os.readlink(os.path.join(fd_dir, name))
        except (OSError, ValueError):
            continue
    return found


def _type_counts() -> Counter[type]:
    """Live gc-tracked objects by type (during a hunt: only those not frozen, i.e. created by its runs)."""
    return Counter(map(type, gc.get_objects()))


@dataclass
class _Baseline:
    snapshot: tracemalloc.Snapshot | None
    types: Counter[type]
    threads: dict[int, str]
    fds: dict[int, str]
    #: ``retention.named_sizes`` at the first measured reading, taken only when Python memory grew in that run.
    sizes: dict[tuple[str, ...], tuple[int, str]] = field(default_factory=dict)


def _relative(path: str, root: str | None) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel
        except ValueError:
            pass
    return path


def gather_evidence(before: _Baseline, after: tracemalloc.Snapshot | None, grown: Counter[type], measured: int,
                    root: str | None, top: int = 8) -> dict[str, Any]:
    """What grew between the baseline and the end: allocation sites, packages, object types, threads, fds."""
    runs = max(1, measured)
    evidence: dict[str, Any] = {"allocation_sites": [], "packages": [], "object_types": [],
                                "new_threads": [], "new_fds": []}
    if before.snapshot is not None and after is not None:
        stats = [s for s in after.compare_to(before.snapshot, "lineno") if s.size_diff > 0]
        by_package: Counter[str] = Counter()
        for stat in stats:
            frame = stat.traceback[0]
            owner = file_index.module_for(frame.filename) or _relative(frame.filename, root)
            by_package[owner] += stat.size_diff
        stats.sort(key=lambda s: -s.size_diff)
        evidence["allocation_sites"] = [
            {"file": _relative(s.traceback[0].filename, root), "line": s.traceback[0].lineno,
             "bytes_per_run": s.size_diff / runs, "count_per_run": s.count_diff / runs}
            for s in stats[:top]]
        evidence["packages"] = [{"package": name, "bytes_per_run": size / runs}
                                for name, size in by_package.most_common(top)]
    evidence["object_types"] = [{"type": f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."),
                                 "count_per_run": count / runs}
                                for kind, count in grown.most_common(top * 2)
                                if count >= runs and not kind.__module__.startswith(_HARNESS_PACKAGES)][:top]
    threads_now = _thread_names()
    evidence["new_threads"] = [name for ident, name in threads_now.items() if ident not in before.threads]
    fds_now = _open_fds()
    evidence["new_fds"] = [target for fd, target in sorted(fds_now.items())
                           if before.fds.get(fd) != target][:top]
    return evidence


def _warnings_isolated(run_once: Callable[[], bool]) -> Callable[[], bool]:
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


def hunt(run_once: Callable[[], bool], params: HuntParameters, *, runs_done: int = 0,
         root: str | None = None, clock: Callable[[], float] | None = None) -> HuntResult:
    """Repeat ``run_once`` (which returns whether the run passed) and decide whether it leaks.

    tracemalloc traces from the first run on, so what the warm-ups put in a bounded cache is traced too and its
    later evictions show as frees (objects allocated before tracing started are invisible when freed). Object
    types are counted over the unfrozen objects only — what the runs created — which keeps counting cheap even
    under tracing. ``params.time_budget`` bounds the wall time of the repeats (``clock`` measures it, by default
    ``budget_clock``).
    """
    result = _hunt(run_once, params, runs_done, root, budget_clock if clock is None else clock)
    if result.budget_stop and result.error:
        _warn_budget(result.error)
    return result


def _hunt(run_once: Callable[[], bool], params: HuntParameters, runs_done: int, root: str | None,
          clock: Callable[[], float]) -> HuntResult:
    started = clock()
    runs = runs_done
    run_once = _warnings_isolated(run_once)
    # Freezing moves every object that exists now to the permanent generation: each gc.collect() during the hunt
    # then only examines what the test's runs created (25 ms -> well under 1 ms a reading on a 150k-object heap),
    # and still frees the cycles those runs leave, which are made of new objects only. Earlier garbage is frozen
    # too (no full collection first: that alone cost 25 ms a test) and is collected after ``unfreeze``.
    _hunt_lru_caches[:] = bounded_lru_caches()  # before freezing: gc.get_objects() no longer sees frozen objects
    gc.freeze()
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(TRACE_FRAMES)
    readings: list[Reading] = []
    error = None
    budget_stop = False
    after = None
    try:
        for _ in range(max(0, params.warmup_runs - runs_done)):
            runs += 1
            if not run_once():
                return _inconclusive(runs, params, f"the test failed when repeated (run {runs})")
            elapsed = _over_budget(params, started, clock)
            if elapsed is not None and runs < params.max_runs:
                result = _inconclusive(runs, params, _budget_message(params, elapsed, runs, measured=0))
                result.budget_stop = True
                return result
        threads, fds = _thread_names(), _open_fds()
        readings.append(take_reading())
        baseline = _Baseline(test_snapshot(), _type_counts(), threads, fds)
        while runs < params.max_runs:
            runs += 1
            if not run_once():
                error = f"the test failed when repeated (run {runs}); the verdict uses the runs before it"
                break
            readings.append(take_reading())
            if len(readings) == 2 and readings[1].traced > readings[0].traced:
                # Python memory grew: note what every named container holds now, to tell at the end which ones
                # grew (60-80 ms under tracing, so only for a test that grows), then read again so that what
                # this left behind is not counted as the run's.
                types_before = _type_counts()
                baseline.sizes = _named_sizes_or_nothing()
                # Reading an instance's __dict__ makes CPython 3.11+ create it: those dicts are not the test's.
                baseline.types.update(_type_counts() - types_before)
                readings[-1] = take_reading()
            if should_stop(readings, params):
                break
            elapsed = _over_budget(params, started, clock)
            if elapsed is not None and runs < params.max_runs:
                error = _budget_message(params, elapsed, runs, measured=len(readings) - 1)
                budget_stop = True
                break
        kinds = judge(readings, params)
        result = HuntResult(runs, params.warmup_runs, readings, kinds, error=error, verdict_runs=runs,
                            budget_stop=budget_stop)
        grown: Counter[type] = Counter()
        if result.score > 0:
            # Types first: the snapshot's own trace tuples (one per traced block) must not count as the test's.
            grown = _type_counts() - baseline.types
            after = test_snapshot()
            if result.kinds["memory"].score > 0:  # for the holder search: while frozen, only what the runs left
                survivors = gc.get_objects()
    finally:
        if started_tracing:
            tracemalloc.stop()
        gc.unfreeze()
        _hunt_lru_caches.clear()
    if result.score > 0:
        result.evidence = gather_evidence(baseline, after, grown, len(readings) - 1, root)
        if result.kinds["memory"].score > 0:
            # The named sizes were taken at the first measured reading: the runs since are the ones they span.
            result.evidence["holders"] = _holders(baseline, survivors, len(readings) - 2, grown, readings)
            del survivors
    return result


def _named_sizes_or_nothing() -> dict[tuple[str, ...], tuple[int, str]]:
    try:
        return named_sizes()
    except Exception:  # evidence only
        return {}


def _holders(baseline: _Baseline, survivors: list[object], measured: int, grown: Counter[type],
             *own: object) -> list[dict[str, Any]]:
    """What keeps the leak alive: named containers that grew every run (``retention.grown_holders``), then the
    pre-existing objects the runs' surviving objects hang from (``retention.find_holders``). Evidence only: a
    failure here loses nothing."""
    try:
        holders = grown_holders(baseline.sizes, named_sizes(), measured) if baseline.sizes and measured > 0 else []
        if not holders:  # nothing named grew: climb from survivors of the types that grew every run (a sample:
            # each level of the climb is a scan of the heap)
            runs = max(1, measured)
            kinds = {kind for kind, count in grown.items() if count >= runs and not kind.__module__.startswith(
                _HARNESS_PACKAGES)}
            sample = [obj for obj in survivors if type(obj) in kinds][-50:]
            holders = find_holders(sample, excluded=(baseline, survivors, sample, *own), max_depth=3,
                                   min_objects=runs)
        return [holder.to_dict() for holder in holders[:5]]
    except Exception:
        return []


def _budget_message(params: HuntParameters, elapsed: float, runs: int, measured: int) -> str:
    budget = f"its time budget of {params.time_budget:g} s ({BUDGET_OPTION}, ini memtrack_hunt_budget)"
    if measured == 0:
        return (f"no leak verdict: the hunt ran out of {budget} after {runs} repeated run(s) ({elapsed:.1f} s), "
                f"before any measured run; raise {BUDGET_OPTION} (0: no limit) to hunt this test")
    caveat = " (a single measured run cannot show a leak)" if measured == 1 else ""
    return (f"the hunt stopped at {budget} after {runs} repeated runs ({elapsed:.1f} s); the verdict uses those "
            f"runs: {params.warmup_runs} warm-up, {measured} measured{caveat}")


def _inconclusive(runs: int, params: HuntParameters, error: str) -> HuntResult:
    return HuntResult(runs, params.warmup_runs, [], {k: KindVerdict(False, 0.0, 0.0) for k in KINDS}, error=error)


def describe(result: HuntResult, limit: float) -> str:
    """The failure message: what leaked, how fast, and where."""
    measured = max(0, len(result.readings) - 1)
    lines = [f"memtrack: leak score {result.score:.2f} exceeds max_leak_score({limit:g}) "
             f"({result.runs} runs: {result.warmup_runs} warm-up, {measured} measured, 1 reported)"]
    labels = {"memory": "Python memory (tracemalloc)", "native": f"native memory ({native.NATIVE_READING}, not traced)",
              "fds": "file descriptors", "threads": "threads"}
    for kind in KINDS:
        verdict = result.kinds[kind]
        if verdict.score <= 0 and not verdict.leaking:
            continue
        amount = format_bytes(verdict.per_run) if kind in ("memory", "native") else f"{verdict.per_run:g}"
        mark = "LEAK" if verdict.leaking else "grew"
        lines.append(f"  {mark} {labels[kind]}: {amount} per run (score {verdict.score:.2f})")
    ev = result.evidence
    if ev.get("allocation_sites"):
        lines.append("  top allocation sites (growth per run):")
        lines += [f"    {s['file']}:{s['line']}: {format_bytes(s['bytes_per_run'])} in {s['count_per_run']:.1f} blocks"
                  for s in ev["allocation_sites"][:5]]
    if ev.get("packages"):
        lines.append("  allocated in: " + ", ".join(f"{p['package']} ({format_bytes(p['bytes_per_run'])}/run)"
                                                   for p in ev["packages"][:5]))
    if ev.get("holders"):
        lines.append("  kept alive by: " + ", ".join(f"{h['holder']} ({h['type']})" for h in ev["holders"][:3]))
    if ev.get("object_types"):
        lines.append("  object types that grew: " + ", ".join(f"{t['type']} (+{t['count_per_run']:.1f}/run)"
                                                            for t in ev["object_types"][:6]))
    if ev.get("new_threads"):
        lines.append("  threads left running: " + ", ".join(ev["new_threads"][:5]))
    if ev.get("new_fds"):
        lines.append("  file descriptors left open: " + ", ".join(ev["new_fds"][:5]))
    if result.error:
        lines.append(f"  note: {result.error}")
    return "\n".join(lines)
