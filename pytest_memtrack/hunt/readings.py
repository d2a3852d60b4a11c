"""One reading of the process between two runs of a hunted test, and whose allocations count as the test's.

Readings after each run: tracemalloc's traced bytes of the test's own allocations (``test_snapshot``), native
memory (``native.native_bytes``: glibc's malloc counters beyond what tracemalloc accounts for, or RSS beyond it
elsewhere), ``sys.getallocatedblocks()`` (what CPython's refleak hunter counts), RSS (psutil), open file
descriptors (psutil ``num_fds``, or ``num_handles`` on Windows), OS threads (psutil ``num_threads``) and gc-tracked
objects. The interpreter's caches are emptied and the garbage collector runs before every reading.
Works on release builds: nothing here needs ``sys.gettotalrefcount``.
"""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import threading
import tracemalloc
from collections import Counter
from collections.abc import Sequence

import psutil

from pytest_memtrack.hunt import native
from pytest_memtrack.hunt.caches import clear_interpreter_caches
from pytest_memtrack.hunt.verdict import Reading
from pytest_memtrack.tracking.attribution import file_index, is_harness

_process = psutil.Process()
_OWN_FILES = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # the whole plugin
              tracemalloc.__file__,
              os.path.dirname(os.path.abspath(psutil.__file__)) + os.sep)


def _fd_count() -> int:
    try:
        return _process.num_fds()
    except AttributeError:  # Windows
        return int(getattr(_process, "num_handles")())  # noqa: B009  (absent from the Linux stubs)


#: Allocations made by the hunt itself (readings, snapshots, psutil calls) are not the test's.
_EXCLUDE = [tracemalloc.Filter(False, path + "*", all_frames=True) for path in _OWN_FILES] + [
    tracemalloc.Filter(False, tracemalloc.__file__, all_frames=True)]


TRACE_FRAMES = 3  # enough to tell whose allocation it is (ours, pytest's, the test's); 8 frames cost 3x more


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
    """Live gc-tracked objects by type (during a hunt: only those not frozen, i.e. created by its runs)."""
    return Counter(map(type, gc.get_objects()))
