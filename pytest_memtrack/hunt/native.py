"""Native memory: what C code holds through malloc, for the hunt's ``native`` kind.

On glibc (Linux), ``mallinfo2()`` gives the bytes malloc has handed out and not taken back, over all its arenas
(``uordblks``) plus the chunks it served by mmap (``hblkhd``). Python objects of 512 bytes or less come from
pymalloc's arenas, which are mmap'd directly and are not in that figure; larger ones go through malloc and are
traced by tracemalloc. So:

    native = malloc in use - traced blocks over 512 bytes - tracemalloc's own bookkeeping

is what C extensions and libraries hold, to within malloc's per-chunk headers (tens of bytes per block), where RSS
moves by whole pages, counts untouched mmap'd memory only once written, and keeps what an arena has freed. A
steady native leak of a few KiB per run is visible in it; in RSS it needs hundreds.

Memory that bypasses malloc is added (``mapped_bytes``): shared and file-backed mappings' resident pages, which no
allocator's arena growth moves.

Elsewhere — not glibc, ``PYTHONMALLOC`` set, ``-X dev`` (debug hooks move the pymalloc threshold), builds without
pymalloc or free-threaded — there is no such reading (``None``) and the hunt falls back to RSS minus traced bytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memtrack.tracking.tracing import tracemalloc

try:
    import pytest_memtrack._heap as _heap  # the optional C helper (hunt/_heap.c)
except ImportError:  # built without it: ctypes does the same, imported only then
    _heap = None

#: Requests up to this size are served by pymalloc (CPython's SMALL_REQUEST_THRESHOLD), larger ones by malloc.
PYMALLOC_MAX_REQUEST = 512


def _pymalloc_layout_is_standard() -> bool:
    if os.environ.get("PYTHONMALLOC") or sys.flags.dev_mode:
        return False
    standard = getattr(_heap, "STANDARD_PYMALLOC", None)
    if standard is not None:
        return bool(standard)
    import sysconfig

    return sysconfig.get_config_var("WITH_PYMALLOC") == 1 and not sysconfig.get_config_var("Py_GIL_DISABLED")


def _ctypes_in_use() -> Callable[[], int] | None:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    function.restype = MallInfo2
    function.argtypes = []

    def in_use() -> int:
        info = function()
        return int(info.uordblks + info.hblkhd)
    return in_use


def _in_use_reader() -> Callable[[], int] | None:
    """malloc's bytes in use (``mallinfo2()``'s ``uordblks + hblkhd``, unsettled): the C helper's reading, else
    the same through ctypes; None where there is no such reading."""
    if not sys.platform.startswith("linux") or not _pymalloc_layout_is_standard():
        return None
    if _heap is not None and hasattr(_heap, "in_use"):
        return _heap.in_use
    return _ctypes_in_use()


_read = _in_use_reader()

#: Which reading the ``native`` kind uses here: ``"malloc"`` (glibc's mallinfo2) or ``"rss"`` (RSS minus traced).
NATIVE_READING = "malloc" if _read is not None else "rss"
#: Native growth per run below which a run does not count as growing, by reading: malloc's figure is exact to the
#: chunk (no-leak runs read within ~2 KiB of each other), RSS moves in pages and arena reuse (hundreds of KiB).
DEFAULT_FLOOR = 16 * 1024 if NATIVE_READING == "malloc" else 256 * 1024


def _chunk_size(request: int) -> int:
    """What glibc counts in ``uordblks`` for a request: size field plus request, 16-byte aligned. (Chunks served
    by mmap round up to a page instead; those are few, at least 128 KiB each, and off by under a page.)"""
    return (request + 8 + 15) & ~15


#: glibc's per-thread cache (tcache): up to ``_CACHED_PER_SIZE`` freed chunks of each request size up to
#: ``_LARGEST_CACHED``, counted by ``mallinfo2()`` as in use (see ``settle_thread_cache``).
_CACHED_PER_SIZE, _SMALLEST_CACHED, _LARGEST_CACHED, _ALIGNMENT = 7, 24, 1032, 16


def _ctypes_settler() -> Any:
    import ctypes

    libc = ctypes.CDLL(None)
    malloc, free = libc.malloc, libc.free
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]
    requests = range(_SMALLEST_CACHED, _LARGEST_CACHED + 1, _ALIGNMENT)
    held = (ctypes.c_void_p * _CACHED_PER_SIZE)()  # allocated once: a settling keeps no object of its own

    def settle() -> None:
        for request in requests:
            for index in range(_CACHED_PER_SIZE):
                held[index] = malloc(request)
            for index in range(_CACHED_PER_SIZE):
                free(held[index])
    return settle


def _settler() -> Any:
    if _read is None:
        return None
    if _heap is None:  # built without the C helper (~5 µs): the same through ctypes, ~0.2 ms
        return _ctypes_settler()
    shape, settle = (_SMALLEST_CACHED, _LARGEST_CACHED, _ALIGNMENT, _CACHED_PER_SIZE), _heap.settle_thread_cache
    return lambda: settle(*shape)


#: Leaves every bin of this thread's malloc cache full. glibc counts the chunks a thread's cache keeps as in use,
#: and how full it is after a run depends on the order of the run's frees: a test that keeps nothing read a few
#: hundred bytes to a few KiB more or less than the run before (jinja2's tests: +0.6-4 KiB a run for 4 runs), which
#: the screen cannot tell from a buffer kept. Filled before every reading, the cache is in the same state each
#: time, so malloc's figure moves only by memory really kept (flat to the byte over 14 runs of such a test).
settle_thread_cache = _settler()


def malloc_in_use() -> int | None:
    """Bytes malloc has handed out and not taken back, with this thread's cache settled (None where it cannot be
    read)."""
    if _read is None:
        return None
    settle_thread_cache()
    return _read()


def _traced_in_malloc(trace_sizes: Iterable[int]) -> int:
    return sum(map(_chunk_size, filter(PYMALLOC_MAX_REQUEST.__lt__, trace_sizes)))


#: Malloc bytes tracemalloc spends per trace beyond what ``get_tracemalloc_memory()`` reports (each trace's value
#: and the chunk headers of its table entries). Measured 48-67 bytes on CPython 3.10-3.13 (20k-200k new traces);
#: 72 leans high on purpose, so that Python objects a test keeps never read as native growth (a Python leak of N
#: objects a run reads as at most 24*N bytes a run *less* native memory, never more).
TRACE_BOOKKEEPING = 72


@dataclass(frozen=True)
class MallocState:
    """Malloc's bytes in use and tracemalloc's reported own memory, read together before a snapshot is taken (so
    that the snapshot's own list is in neither)."""
    in_use: int
    tracemalloc_own: int


def malloc_state() -> MallocState | None:
    in_use = malloc_in_use()
    if in_use is None:
        return None
    return MallocState(in_use, tracemalloc.get_tracemalloc_memory() if tracemalloc.is_tracing() else 0)


def native_bytes(state: MallocState | None, trace_sizes: Sequence[int]) -> int | None:
    """Native bytes through malloc: malloc in use minus what tracemalloc accounts for in it. ``trace_sizes`` are the
    sizes of every block traced when ``state`` was read (all of them, whoever allocated them); None without a
    reading."""
    if state is None:
        return None
    bookkeeping = state.tracemalloc_own + TRACE_BOOKKEEPING * len(trace_sizes) if state.tracemalloc_own else 0
    return state.in_use - _traced_in_malloc(trace_sizes) - bookkeeping


def untraced_bytes(state: MallocState | None, trace_sizes: Sequence[int]) -> int | None:
    """The ``native`` kind's reading: ``native_bytes`` (exact to the chunk) plus the memory mapped outside any
    allocator (``mapped_bytes``, page-granular); None without malloc's reading."""
    through_malloc = native_bytes(state, trace_sizes)
    return None if through_malloc is None else through_malloc + (mapped_bytes() or 0)


_ROLLUP = "/proc/self/smaps_rollup"
_rollup_readable = os.path.exists(_ROLLUP)


def mapped_bytes() -> int | None:
    """Resident memory that no allocator hands out: the pages of shared and file-backed mappings (``Rss`` minus
    ``Anonymous`` in ``/proc/self/smaps_rollup``, Linux 4.14+). An ``mmap.mmap(-1, n)`` kept per call (a shared
    anonymous mapping) and a shared library loaded per call grow it; malloc's heap and arenas and pymalloc's arenas
    are private anonymous memory and never do, so an allocator's arena growth is not read as a leak. A private
    anonymous ``mmap`` made from C is in ``Anonymous`` with the arenas, and not seen here. None off Linux."""
    global _rollup_readable
    if not _rollup_readable:
        return None
    rss = anonymous = None
    try:
        with open(_ROLLUP, "rb") as rollup:
            for line in rollup.read().splitlines():
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Anonymous:"):
                    anonymous = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        _rollup_readable = False
        return None
    return rss - anonymous if rss is not None and anonymous is not None else None
