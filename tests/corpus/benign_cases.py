"""Tests whose memory grows benignly or not at all: every one must pass its max_leak_score marker."""

import collections
import ctypes
import functools
import gc
import itertools
import mmap
import pickle
import re
import threading
import typing
import warnings

import pytest

_libc = ctypes.CDLL(None)
_libc.malloc.restype, _libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_libc.free.restype, _libc.free.argtypes = None, [ctypes.c_void_p]
NATIVE_RING = []

FILLED_ONCE = {}
BUFFER = {"data": b""}
SAWTOOTH = []


@functools.lru_cache(maxsize=4)
def bounded(key):
    return bytes(10_000) + str(key).encode()


_keys = iter(range(10**9))
_serial = itertools.count()


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


@pytest.fixture(scope="module")
def module_dataset():
    return [bytes(1000) for _ in range(1000)]


@pytest.fixture
def scratch_list():
    items = []
    yield items
    items.clear()


@pytest.mark.max_leak_score(0.1)
def test_benign_cache_filled_on_first_call():
    if "table" not in FILLED_ONCE:
        FILLED_ONCE["table"] = [bytes(1000) for _ in range(100)]


@pytest.mark.max_leak_score(0.1)
def test_benign_bounded_cache_that_is_full():
    bounded(next(_keys))


@pytest.mark.max_leak_score(0.1)
def test_benign_lazy_import():
    import fractions

    assert fractions.Fraction(1, 2) == 0.5


@pytest.mark.max_leak_score(0.1)
def test_benign_module_scoped_fixture(module_dataset):
    assert len(module_dataset) == 1000


@pytest.mark.max_leak_score(0.1)
def test_benign_cyclic_garbage_freed_by_the_collector():
    for _ in range(100):
        node = {"payload": bytes(1000)}
        node["self"] = node


@pytest.mark.max_leak_score(0.1)
def test_benign_buffer_replaced_by_one_of_the_same_size():
    BUFFER["data"] = bytes(100_000)


@pytest.mark.max_leak_score(0.1)
def test_benign_function_fixture_the_test_appends_to(scratch_list):
    scratch_list.append(bytes(50_000))


@pytest.mark.max_leak_score(0.1)
def test_benign_large_temporary_allocation():
    data = [bytes(100) for _ in range(50_000)]
    assert len(data) == 50_000


@pytest.mark.max_leak_score(0.1)
def test_benign_file_closed_after_use(tmp_path):
    path = tmp_path / "x.txt"
    with open(path, "w") as f:
        f.write("hello")


@pytest.mark.max_leak_score(0.1)
def test_benign_thread_started_and_joined():
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()


@pytest.mark.max_leak_score(0.1)
def test_benign_sawtooth_fill_and_clear():
    if SAWTOOTH:
        SAWTOOTH.clear()
    else:
        SAWTOOTH.extend(bytes(1000) for _ in range(100))


@pytest.mark.max_leak_score(0.1)
def test_benign_gc_disabled_garbage_collected_between_runs():
    gc.disable()
    try:
        cycle = []
        cycle.append(cycle)
        cycle.append(bytes(10_000))
    finally:
        gc.enable()


@pytest.mark.max_leak_score(0.1)
def test_benign_attribute_names_built_at_run_time():
    # CPython's type attribute cache keeps each looked-up name (a new string per run here) until its slot is
    # reused: bounded by its 4096 slots, and emptied with sys._clear_type_cache().
    record = type("Record", (), {})  # a class made per call, freed after it
    for field in range(20):
        getattr(record, f"field_{field}", None)
    for field in range(20):
        getattr(Point, "visit_" + str(field), None)


@pytest.mark.max_leak_score(0.1)
def test_benign_functions_and_classes_round_tripped_through_pickle():
    # pickle stores them by name; loading reads each name back as a new string and looks it up (type cache)
    things = [len, sum, str, int, bool, Point, functools.partial, itertools.count, threading.Thread, gc.collect]
    assert pickle.loads(pickle.dumps(things)) == things


@pytest.mark.max_leak_score(0.1)
def test_benign_typing_alias_of_a_class_defined_per_call():
    class Local:  # kept by typing's bounded cache of Optional[...] and List[...] until 128 newer ones evict it
        payload = [bytes(100) for _ in range(5)]

    assert typing.Optional[Local] == typing.Union[Local, None]
    assert list[Local].__args__ == (Local,)


@pytest.mark.max_leak_score(0.1)
def test_benign_regex_compiled_from_run_time_text():
    for _ in range(3):  # re's cache of compiled patterns keeps the last 512
        assert re.compile(rf"item-{next(_serial)}-(\d+)-[a-z]+").match("item") is None


@pytest.mark.max_leak_score(0.1)
def test_benign_warning_whose_text_differs_per_run():
    # pytest records each test's warnings and resets the warnings registry per test, not per hunted run.
    for _ in range(5):
        warnings.warn(f"object {next(_serial)} is deprecated; " + "use the new API " * 10, UserWarning)


@pytest.mark.max_leak_score(0.1)
def test_native_buffer_allocated_and_freed():
    address = _libc.malloc(4 * 1024 * 1024)
    ctypes.memset(address, 1, 4 * 1024 * 1024)
    _libc.free(address)


@pytest.mark.max_leak_score(0.1)
def test_native_ring_of_four_buffers():
    NATIVE_RING.append(_libc.malloc(64 * 1024))  # a bounded pool of C buffers: the oldest is freed
    if len(NATIVE_RING) > 4:
        _libc.free(NATIVE_RING.pop(0))


@pytest.mark.max_leak_score(0.1)
def test_native_contexts_opened_and_closed():
    import sqlite3
    import zlib

    connection = sqlite3.connect(":memory:")
    connection.execute("create table t (x)")
    connection.executemany("insert into t values (?)", [(i,) for i in range(2000)])
    connection.close()
    compressor = zlib.compressobj(9)
    compressor.compress(bytes(100_000))
    compressor.flush()


@functools.lru_cache(maxsize=256)
def _render(key):
    return bytes(10_000) + str(key).encode()


@pytest.mark.max_leak_score(0.1)
def test_bounded_lru_cache_with_a_new_key_every_call():
    _render(next(_serial))  # 10 KB more a run until 256 entries: bounded, however long that takes


class _Repository:
    @functools.lru_cache(maxsize=128)
    def lookup(self, key):
        return [key] * 1000


@pytest.mark.max_leak_score(0.1)
def test_bounded_lru_cache_on_a_method_keeps_instances_until_evicted():
    _Repository().lookup(1)


# --- Growth that stops on its own, however long it looks like a leak: bounded structures that take more calls to
# --- fill than a hunt's warm-ups, growth that slows to a stop, a ring buffer full before the hunt began.

RECENT = collections.deque(maxlen=20)
_calls = itertools.count()


@pytest.mark.max_leak_score(0.1)
def test_benign_deque_of_twenty_filling_one_entry_per_call():
    RECENT.append({"call": next(_calls), "payload": bytes(3_000)})


HISTORY = collections.deque(({"n": i, "label": f"event-{i}", "tags": [i, -i]} for i in range(50)), maxlen=50)


@pytest.mark.max_leak_score(0.1)
def test_benign_ring_buffer_already_full_when_the_hunt_starts():
    n = next(_calls)
    HISTORY.append({"n": n, "label": f"event-{n}", "tags": [n, -n]})


SLOTS = {}


@pytest.mark.max_leak_score(0.1)
def test_benign_table_of_six_slots_filling_one_per_call():
    SLOTS.setdefault(next(_calls) % 6, bytes(3_000))


SHRINKING = {}
_halvings = itertools.count()


@pytest.mark.max_leak_score(0.1)
def test_benign_growth_that_slows_to_a_stop():
    size = 96_000 >> next(_halvings)  # each call keeps half what the one before kept, then nothing
    SHRINKING.setdefault(size, bytes(size))


_late = itertools.count()
LATE_TABLE = {}


@pytest.mark.max_leak_score(0.1)
def test_benign_table_built_once_on_the_fifth_call():
    if next(_late) == 4:
        LATE_TABLE["built"] = [bytes(1_000) for _ in range(12)]


@pytest.mark.max_leak_score(0.1)
def test_benign_shared_memory_mapping_closed_after_use():
    mapping = mmap.mmap(-1, 512 * 1024)
    mapping.write(b"x" * len(mapping))
    mapping.close()
