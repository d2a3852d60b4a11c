"""One reading of the process between two runs of a hunted test, and whose allocations count as the test's.

Readings after each run: tracemalloc's traced bytes of the test's own allocations (``test_snapshot``), native
memory (``native.untraced_bytes``: glibc's malloc counters beyond what tracemalloc accounts for, plus mapped
memory; or RSS beyond it elsewhere), ``sys.getallocatedblocks()`` (what CPython's refleak hunter counts), RSS
(``/proc/self/statm``, else psutil), open file descriptors (the entries of ``/proc/self/fd``, else psutil's
``num_fds`` or ``num_handles`` on Windows), OS threads (``/proc/self/task``, else psutil's ``num_threads``) and
gc-tracked objects. The interpreter's caches are emptied and the garbage collector runs before
every reading.
Works on release builds: nothing here needs ``sys.gettotalrefcount``.
"""

from __future__ import annotations

import collections
import gc
import operator
import os
import sys
import sysconfig
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from pytest_memtrack.hunt import native
from pytest_memtrack.hunt.caches import clear_interpreter_caches
from pytest_memtrack.hunt.verdict import Reading
from pytest_memtrack.tracking.attribution import file_index, is_harness
from pytest_memtrack.tracking.process import current_rss, thread_count

_process = psutil.Process()
_OWN_FILES = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # the whole plugin
              tracemalloc.__file__,
              os.path.dirname(os.path.abspath(psutil.__file__)) + os.sep)


def fd_count() -> int:
    """Open file descriptors: the entries of ``/proc/self/fd`` (what psutil's ``num_fds`` counts, at a fifth of its
    cost: ~5 µs), else psutil's count."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        pass
    try:
        return _process.num_fds()
    except AttributeError:  # Windows
        return int(getattr(_process, "num_handles")())  # noqa: B009  (absent from the Linux stubs)


#: Allocations made by the hunt itself (readings, snapshots, psutil calls) are not the test's.
_EXCLUDE = [tracemalloc.Filter(False, path + "*") for path in _OWN_FILES] + [
    tracemalloc.Filter(False, tracemalloc.__file__)]


TRACE_FRAMES = 3  # enough to tell whose allocation it is (ours, pytest's, the test's); 8 frames cost 3x more
_CALLER_FRAMES = 3  # a code frame this close to one of the hunt's own was called by the hunt
#: The probe's traceback limits, in turn (``probe``): 12 frames hold the chains of standard library calls below a
#: test's code (importlib below a template loader is 10 frames deep, a ``copy.deepcopy`` of a nested payload 5 to 9);
#: deeper ones (a deepcopy of a deeply nested structure) take the next. A run's cost grows with the limit: in
#: jinja2's suite a run under 8, 10, 12 and 16 frames took 50, 64, 73 and 96 ms (5 ms untraced, ~20 ms under
#: ``TRACE_FRAMES``), and 12 told the same as 16 there.
PROBE_FRAMES = (12, 64)
PROBE_RUNS = 2  # per limit: a warm-up under its traces, then the run measured
#: Bytes of unknown caller the measured runs may leave per run without a probe: below this, or below an eighth of
#: what they left as the test's, they change its growth too little to pay for one.
UNKNOWN_FLOOR = 256


_STDLIB = tuple({os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")})


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
        if is_harness(package):
            origin = "harness"
        elif filename.startswith(("<", *_STDLIB)) and "site-packages" not in filename:
            origin = "neutral"
        else:
            origin = "code"
        _origin_cache[filename] = origin
    return origin


def _owner(frames: Sequence[tuple[str, int]], total_frames: int | None = None) -> str:
    """Whose allocation a trace is: "test" when the first frame (innermost first) that is not the standard
    library's is the code's, wherever it is in the stack, unless the hunt called that code (one of the
    ``_CALLER_FRAMES`` innermost frames is ours: a finalizer the hunt's ``gc.collect()`` ran); "other" when that
    frame is the hunt's or the harness's; "unknown" when every recorded frame is stdlib and the stack went deeper
    than what was recorded (a deeper trace would tell).

    It runs under tracing, once per traceback of a snapshot: it allocates nothing (no slice, no generator), as each
    allocation it made would be traced with the whole traceback."""
    cache = _origin_cache
    index = 0
    for filename, _ in frames:
        origin = cache.get(filename) or _origin(filename)
        if origin == "code":
            for caller in range(index + 1, min(len(frames), _CALLER_FRAMES)):
                name = frames[caller][0]
                if (cache.get(name) or _origin(name)) == "self":
                    return "other"
            return "test"
        if origin != "neutral":
            return "other"
        index += 1
    return "test" if total_frames is None or total_frames <= len(frames) else "unknown"


def _owned_by_test(frames: Sequence[tuple[str, int]], total_frames: int | None = None) -> bool:
    """Whether the test made an allocation (``_owner``); one whose caller is unknown is not counted."""
    return _owner(frames, total_frames) == "test"


def _test_traces(raw: list[tuple]) -> tuple[list[tuple], dict[int, int]]:
    """(the test's traces, the bytes of the traces whose caller is unknown by ``unknown_key``). Each traceback is
    classified once: traces made at the same place share its tuple."""
    owners: dict[tuple, str] = {}
    mine: list[tuple] = []
    unknown: list[tuple] = []
    for trace in raw:
        frames = trace[2]
        owner = owners.get(frames)
        if owner is None:
            owner = owners[frames] = _owner(frames, trace[3] if len(trace) > 3 else None)
        if owner == "test":
            mine.append(trace)
        elif owner == "unknown":
            unknown.append(trace)
    by_traceback: dict[int, int] = {}  # ints only: a dict the garbage collector does not track
    for trace in unknown:
        key = unknown_key(trace[2])
        by_traceback[key] = by_traceback.get(key, 0) + trace[1]
    return mine, by_traceback


def unknown_key(frames: tuple) -> int:
    """What identifies a traceback of unknown caller across snapshots (each has tuples of its own), whatever the
    depth of the stack it was made at (the probe calls the test one frame deeper): a hash of its recorded frames."""
    return hash(frames)


_size = operator.itemgetter(1)


def test_snapshot() -> tracemalloc.Snapshot:
    """A snapshot of what the test's code (and the libraries it calls) allocated, without the hunt's and
    pytest's own allocations."""
    snapshot = tracemalloc.take_snapshot()
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:  # not CPython's layout: fall back to tracemalloc's (slower) filters
        return snapshot.filter_traces(_EXCLUDE)
    return tracemalloc.Snapshot(_test_traces(raw)[0], snapshot.traceback_limit)


def _traced_and_native() -> tuple[int, dict[int, int], int | None]:
    """(the test's traced bytes, traced bytes of unknown caller by traceback, native bytes by malloc's reading or
    None) from one snapshot."""
    if not tracemalloc.is_tracing():
        return 0, {}, native.untraced_bytes(native.malloc_state(), ())
    state = native.malloc_state()  # before the snapshot, which is not in it
    snapshot = tracemalloc.take_snapshot()
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:
        return sum(trace.size for trace in snapshot.filter_traces(_EXCLUDE).traces), {}, None
    mine, unknown = _test_traces(raw)
    return sum(map(_size, mine)), unknown, native.untraced_bytes(state, [trace[1] for trace in raw])


def _accounted() -> int:
    if not tracemalloc.is_tracing():
        return 0
    return tracemalloc.get_traced_memory()[0] + tracemalloc.get_tracemalloc_memory()


def take_reading() -> Reading:
    clear_interpreter_caches()
    gc.collect()
    # Without malloc's reading, native is RSS beyond this: read before the snapshot below allocates.
    accounted = _accounted() if native.NATIVE_READING == "rss" else 0
    traced, unknown, native_reading = _traced_and_native()
    return Reading(traced=traced, unknown=sum(unknown.values()), unknown_by=unknown,
                   blocks=sys.getallocatedblocks(), rss=current_rss(),
                   fds=fd_count(), threads=thread_count(), objects=len(gc.get_objects()),
                   accounted=accounted, native=native_reading)


def shifted(baseline: Reading, before: Reading, after: Reading) -> Reading:
    """``baseline`` moved by what the hunt itself changed between ``before`` and ``after`` (no run in between):
    the process-wide figures only; traced bytes are the test's and the hunt's own are not among them."""
    def moved(field_name: str) -> int:
        return getattr(baseline, field_name) + getattr(after, field_name) - getattr(before, field_name)

    native_reading = None if baseline.native is None or after.native is None or before.native is None \
        else moved("native")
    return replace(baseline, blocks=moved("blocks"), rss=moved("rss"), objects=moved("objects"),
                   accounted=moved("accounted"), native=native_reading)


def unknown_grew(readings: Sequence[Reading]) -> bool:
    """Whether the measured runs left ``UNKNOWN_FLOOR`` bytes or more a run whose caller the traces do not show,
    and an eighth or more of what they left as the test's, the last run too: enough to change the test's growth
    (see ``probe``)."""
    runs = len(readings) - 1
    if runs < 1 or (runs > 1 and readings[-1].unknown <= readings[-2].unknown):  # a step is no steady growth
        return False
    unknown = (readings[-1].unknown - readings[0].unknown) / runs
    return unknown >= UNKNOWN_FLOOR and unknown * 8 >= (readings[-1].traced - readings[0].traced) / runs


def upper_bound(readings: Sequence[Reading]) -> list[Reading]:
    """The readings with every byte of unknown caller charged to the test when they grew enough to matter
    (``unknown_grew``): what it grows by at most, which decides to go on repeating it before a probe tells."""
    if not unknown_grew(readings):
        return list(readings)
    return [replace(reading, traced=reading.traced + reading.unknown) for reading in readings]


@dataclass
class Probe:
    """Whose the bytes are that ``TRACE_FRAMES`` frames do not tell the caller of (``probe``)."""
    runs: int  # the test's runs it took
    #: by ``unknown_key`` of such a traceback: the part of what it grew by that the test's code allocated (0 to 1)
    shares: dict[int, float] = field(default_factory=dict)
    #: bytes and blocks one run left, by the frame of the test's code they were allocated below (its file, line)
    sites: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    unknown: int = 0  # bytes the run left whose caller even the probe's traces do not show
    grown: int = 0  # bytes the run left whose caller ``TRACE_FRAMES`` frames do not show


def _probe_traces() -> dict[tuple[Any, int], tuple[int, int]] | None:
    """(bytes, blocks) of the live traces by (traceback, depth of the stack), read as readings are."""
    clear_interpreter_caches()
    gc.collect()
    raw = getattr(tracemalloc.take_snapshot().traces, "_traces", None)
    if raw is None:
        return None
    grouped: dict[tuple[Any, int], tuple[int, int]] = {}
    for trace in raw:
        key = (trace[2], trace[3] if len(trace) > 3 else len(trace[2]))
        size, count = grouped.get(key, (0, 0))
        grouped[key] = (size + trace[1], count + 1)
    return grouped


def probe(run_once: Callable[[], bool]) -> Probe:
    """Whose the bytes of unknown caller are: tracing starts over with ``PROBE_FRAMES[0]``-deep traces (the caller
    owns it), the test runs once to warm up and once measured. What that run left with a traceback whose
    ``TRACE_FRAMES`` innermost frames are all the standard library's is the test's when the first frame that is
    not is its code (``_owner``); grouped by those innermost frames, that gives the part of each such traceback's
    growth that is the test's. When even those traces leave as much unknown as ``unknown_grew`` allows, the next
    limit takes over. Without shares when the test failed or the traces cannot be read.

    The verdict's readings are all taken with ``TRACE_FRAMES`` frames: deep traces make tracemalloc spend malloc
    memory it does not count (every new traceback it interns), which the native reading would take for growth; and
    what the hunt itself did between readings (refilling an ABC's caches) is nowhere in the probe's run."""
    runs = 0
    found = Probe(0)
    for frames in PROBE_FRAMES:
        tracemalloc.stop()
        tracemalloc.start(frames)
        runs += 1
        if not run_once() or (before := _probe_traces()) is None:
            return Probe(runs)
        runs += 1
        if not run_once():
            return Probe(runs)
        found = _probed(before, _probe_traces() or {}, runs)
        if found.unknown < UNKNOWN_FLOOR or found.unknown * 8 < found.grown:
            break
    return found


def _probed(before: dict[tuple[Any, int], tuple[int, int]], after: dict[tuple[Any, int], tuple[int, int]],
            runs: int) -> Probe:
    """The probe's finding from the traces before and after its measured run."""
    grown: dict[int, list[int]] = {}  # unknown_key of the shallow traceback -> [the test's bytes, all bytes]
    found = Probe(runs)
    for key in after.keys() | before.keys():
        (size, count), (old_size, old_count) = after.get(key, (0, 0)), before.get(key, (0, 0))
        frames, depth = key
        shallow = frames[:TRACE_FRAMES]
        if size == old_size or _owner(shallow, depth) != "unknown":
            continue
        owner = _owner(frames, depth)
        split = grown.setdefault(unknown_key(shallow), [0, 0])
        split[1] += size - old_size
        found.grown += size - old_size
        if owner == "unknown":
            found.unknown += size - old_size
        elif owner == "test":
            split[0] += size - old_size
            site = _code_frame(frames) if size > old_size else None
            if site is not None:
                site_size, site_count = found.sites.get(site, (0, 0))
                found.sites[site] = (site_size + size - old_size, site_count + count - old_count)
    found.shares = {key: min(1.0, test / total) for key, (test, total) in grown.items() if test > 0 and total > 0}
    return found


def _code_frame(frames: Sequence[tuple[str, int]]) -> tuple[str, int] | None:
    return next(((name, line) for name, line in frames if (_origin_cache.get(name) or _origin(name)) == "code"),
                None)


def charged(readings: list[Reading], probed: Probe | None) -> list[Reading]:
    """The readings with the test charged its part of the bytes of unknown caller (none without a probe)."""
    if probed is None or not probed.shares:
        return readings
    shares = probed.shares  # a few tracebacks; a reading's ``unknown_by`` has hundreds
    return [replace(reading, traced=reading.traced + round(sum(reading.unknown_by.get(key, 0) * share
                                                              for key, share in shares.items())))
            for reading in readings]


def thread_names() -> dict[int, str]:
    """Live threads by ident: their name, and the function they run where it has one."""
    names = {}
    for thread in threading.enumerate():
        qualname = getattr(getattr(thread, "_target", None), "__qualname__", None)
        names[thread.ident or 0] = f"{thread.name} ({qualname})" if qualname else thread.name
    return names


def open_fds() -> dict[int, str]:
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


def type_counts() -> Counter[type]:
    """Live gc-tracked objects by type (during a hunt: only those not frozen, i.e. created by its runs).

    Counted without ``Counter(iterable)``, whose ``isinstance(iterable, Mapping)`` refills the negative caches of
    every ABC registered as a Mapping once a test registered or defined one: kilobytes traced deep in ``abc``,
    between two readings, which would read as the test's growth of unknown caller."""
    counts: Counter[type] = Counter()
    _count_elements(counts, map(type, gc.get_objects()))
    return counts


def _count_in_python(counts: dict[Any, int], items: Iterable[Any]) -> None:
    for item in items:
        counts[item] = counts.get(item, 0) + 1


#: ``collections``'s C helper of ``Counter``, where there is one.
_count_elements: Callable[[dict[Any, int], Iterable[Any]], None] = getattr(
    collections, "_count_elements", _count_in_python)
