"""The native-memory reading (glibc mallinfo2 minus what tracemalloc accounts for) against real allocations."""

from __future__ import annotations

import ctypes
import gc
import tracemalloc

import pytest

from pytest_memtrack.hunt import native

pytestmark = pytest.mark.skipif(native.NATIVE_READING != "malloc", reason="no glibc mallinfo2 reading here")


@pytest.fixture
def libc():
    lib = ctypes.CDLL(None)
    lib.malloc.restype, lib.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    lib.free.restype, lib.free.argtypes = None, [ctypes.c_void_p]
    return lib


@pytest.fixture
def tracing():
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(1)
    yield
    if not was_tracing:
        tracemalloc.stop()


def reading() -> int:
    gc.collect()
    state = native.malloc_state()
    sizes = [trace[1] for trace in tracemalloc.take_snapshot().traces._traces]
    value = native.native_bytes(state, sizes)
    assert value is not None
    return value


@pytest.mark.parametrize("size", [2_000, 64 * 1024, 4 * 1024 * 1024])
def test_memory_malloced_by_c_code_shows_and_its_free_takes_it_back(libc, tracing, size):
    before = reading()
    pointer = libc.malloc(size)
    try:
        held = reading() - before
    finally:
        libc.free(pointer)
    released = reading() - before
    assert size <= held <= size + 8192  # a chunk header, or the page an mmap'd chunk rounds up to, and noise
    assert abs(released) < 2048


def test_python_objects_traced_by_tracemalloc_are_not_native(tracing):
    before = reading()
    kept = [bytes(10_000) for _ in range(200)] + [str(i) * 20 for i in range(20_000)]  # ~2 MB: malloc and pymalloc
    grown = reading() - before
    assert len(kept) == 20_200
    # 2 MB of Python objects: none of it native (tracemalloc's bookkeeping is over-subtracted on purpose)
    assert grown < 8 * 1024


def test_malloc_in_use_is_a_real_reading():
    assert native.malloc_in_use() > 0


@pytest.fixture
def no_collections():
    """No collection in the middle of a measurement: what it frees is not the run's."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def churn(libc, sizes: list[int]) -> None:
    """Allocate and free chunks of ``sizes`` in an order that leaves glibc's per-thread cache filled differently."""
    pointers = [libc.malloc(size) for size in sizes]
    for pointer in pointers[::2] + pointers[1::2]:
        libc.free(pointer)


def test_a_run_that_keeps_nothing_reads_the_same_to_the_byte(libc, no_collections):
    """glibc counts the chunks its per-thread cache keeps as in use; the reading settles that cache first, so runs
    that free all they allocate, each in a different pattern, read alike."""
    readings = []
    for run in range(12):
        churn(libc, [40 + 16 * ((run * 7 + i) % 60) for i in range(run % 5 + 3)] * 3)
        readings.append(native.malloc_in_use())
    assert len(set(readings[4:])) == 1, readings  # the first runs: ctypes' and the interpreter's own first mallocs


def test_chunks_a_run_frees_into_the_thread_cache_do_not_read_as_kept(libc, no_collections):
    """What settling removes is real: with a size's cache bin emptied, chunks a run allocates and frees again stay
    in the bin and glibc's raw figure counts them as in use; the settled reading does not move."""
    size = 200
    held = [libc.malloc(size) for _ in range(7)]  # takes this size's bin empty (glibc keeps up to 7)
    try:
        before = native._function().uordblks
        churn(libc, [size] * 3)
        assert native._function().uordblks - before >= 3 * native._chunk_size(size)  # freed, read as in use
        for pointer in [libc.malloc(size) for _ in range(7)]:  # empty again
            held.append(pointer)
        settled = native.malloc_in_use()
        churn(libc, [size] * 3)
        assert native.malloc_in_use() == settled
    finally:
        for pointer in held:
            libc.free(pointer)


@pytest.mark.parametrize("size", [600, 1000, 3000])
def test_a_chunk_kept_per_run_still_reads_as_growth(libc, no_collections, size):
    kept = []
    readings = []
    for run in range(8):
        churn(libc, [40 + 16 * ((run * 5 + i) % 60) for i in range(6)])
        kept.append(libc.malloc(size))
        readings.append(native.malloc_in_use())
    try:
        steps = [b - a for a, b in zip(readings, readings[1:])]
        assert all(step >= size for step in steps) and steps[-2:] == [native._chunk_size(size)] * 2, steps
    finally:
        for pointer in kept:
            libc.free(pointer)


def test_the_ctypes_settler_does_what_the_c_helper_does(libc, no_collections):
    settle = native._ctypes_settler()
    readings = []
    for run in range(8):
        churn(libc, [40 + 16 * ((run * 3 + i) % 60) for i in range(run % 4 + 2)] * 2)
        settle()
        readings.append(native._function().uordblks)
    assert len(set(readings[4:])) == 1, readings
