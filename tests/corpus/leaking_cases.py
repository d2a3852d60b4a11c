"""Tests that leak, one kind each: every one must fail its max_leak_score marker."""

import ctypes
import functools
import logging
import os
import threading

import pytest

GLOBAL_LIST = []
CACHE_BY_REQUEST = {}
_request_counter = iter(range(10**9))


class Registry:
    instances = []

    def __init__(self):
        self.payload = bytearray(20_000)
        Registry.instances.append(self)


@functools.cache
def unbounded(key):
    return bytes(10_000) + str(key).encode()


SIGNATURES = {}


class Settings:
    pass


HOLD_FDS = []
STOP = threading.Event()
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


@pytest.mark.max_leak_score(0.1)
def test_leak_global_list_of_buffers():
    GLOBAL_LIST.append(bytes(50_000))


@pytest.mark.max_leak_score(0.1)
def test_leak_cache_keyed_by_request_id():
    request_id = next(_request_counter)
    CACHE_BY_REQUEST[request_id] = {"id": request_id, "body": "x" * 10_000}


@pytest.mark.max_leak_score(0.1)
def test_leak_class_level_registry():
    Registry()


@pytest.mark.max_leak_score(0.1)
def test_leak_unbounded_lru_cache():
    unbounded(next(_request_counter))


@pytest.mark.max_leak_score(0.1)
def test_leak_file_descriptor(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fd-leak.txt"
    path.write_text("x")
    HOLD_FDS.append(os.open(path, os.O_RDONLY))


@pytest.mark.max_leak_score(0.1)
def test_leak_thread_left_running():
    threading.Thread(target=STOP.wait, daemon=True, name="leaky-worker").start()


@pytest.mark.max_leak_score(0.1)
def test_leak_logging_handler_added_per_call():
    handler = logging.StreamHandler()
    handler.buffer = bytearray(4096)
    logging.getLogger("corpus.leaky").addHandler(handler)


@pytest.mark.max_leak_score(0.1)
def test_leak_native_memory_invisible_to_tracemalloc():
    size = 2 * 1024 * 1024
    address = _libc.malloc(size)
    ctypes.memset(address, 1, size)  # touch the pages so they become resident


@pytest.mark.max_leak_score(0.1)
def test_leak_native_malloc_never_written():
    _libc.malloc(1024 * 1024)  # mmap'd and never touched: not resident, so RSS never shows it


@pytest.mark.max_leak_score(0.1)
def test_leak_small_native_buffer():
    address = _libc.malloc(32 * 1024)  # a C library's context, kept: far below what RSS can tell from noise
    ctypes.memset(address, 0, 32 * 1024)


@pytest.mark.max_leak_score(0.1)
def test_leak_small_but_steady():
    GLOBAL_LIST.append(bytearray(2048))


@pytest.mark.max_leak_score(0.1)
def test_leak_string_grown_in_module_state():
    global GROWING
    GROWING = globals().get("GROWING", "") + "y" * 20_000


@pytest.mark.max_leak_score(0.1)
def test_leak_class_defined_per_call_kept_in_a_registry():
    class Wrapped:  # as toolz's test_inspect_wrapped_property does with toolz._signatures.signatures
        def __init__(self, func):
            self.func = func

        def __call__(self, *args):
            return self.func(*args)

        @property
        def __wrapped__(self):
            return self.func

    SIGNATURES[Wrapped] = (lambda x: None,)


@pytest.mark.max_leak_score(0.1)
def test_leak_attribute_added_per_call_under_a_run_time_name():
    setattr(Settings, f"option_{next(_request_counter)}", bytes(2000))


@functools.cache
def _cached_forever(key):
    return bytes(10_000) + str(key).encode()


@pytest.mark.max_leak_score(0.1)
def test_leak_functools_cache_with_a_new_key_every_call():
    _cached_forever(next(_request_counter))
