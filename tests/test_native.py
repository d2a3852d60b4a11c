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
