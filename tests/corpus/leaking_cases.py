"""Tests that leak, one kind each: every one must fail its max_leak_score marker."""

import atexit
import codecs
import contextvars
import ctypes
import ctypes.util
import functools
import itertools
import logging
import mmap
import os
import shutil
import signal
import tempfile
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


# --- Leaks a repeat-and-read hunt is easily fooled by: growth that skips calls, memory malloc never hands out,
# --- and holders kept by the interpreter rather than by a module.

_calls_a, _calls_b, _calls_c = itertools.count(), itertools.count(), itertools.count()
SOMETIMES = []


@pytest.mark.max_leak_score(0.1)
def test_leak_on_every_other_call():
    if next(_calls_a) % 2:  # a retry path, a batch flushed to a list that is never emptied: half the calls keep
        SOMETIMES.append(bytearray(12_000))


@pytest.mark.max_leak_score(0.1)
def test_leak_on_every_third_call():
    if next(_calls_b) % 3 == 0:
        SOMETIMES.append(bytearray(12_000))


@pytest.mark.max_leak_score(0.1)
def test_leak_in_bursts_of_two_calls_between_two_quiet_ones():
    if next(_calls_c) % 4 < 2:
        SOMETIMES.append(bytearray(12_000))


SHARED_MAPPINGS = []


@pytest.mark.max_leak_score(0.1)
def test_leak_shared_memory_mapping_kept_per_call():
    mapping = mmap.mmap(-1, 512 * 1024)  # shared anonymous memory: no allocator hands it out
    mapping.write(b"x" * len(mapping))
    SHARED_MAPPINGS.append(mapping)  # ~100 bytes of Python object for 512 KiB of memory


_library_dir = tempfile.mkdtemp(prefix="memtrack-libs-")
_library_copies = itertools.count()


def _a_shared_library():
    for name in ("z", "bz2", "lzma", "ffi", "expat"):
        found = ctypes.util.find_library(name)
        for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                       "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
            if found and os.path.exists(os.path.join(folder, found)):
                return os.path.join(folder, found)
    return None


_LIBRARY = _a_shared_library()


@pytest.mark.skipif(_LIBRARY is None, reason="no shared library to copy on this system")
@pytest.mark.max_leak_score(0.1)
def test_leak_shared_library_loaded_per_call():
    copy = os.path.join(_library_dir, f"libplugin{next(_library_copies)}.so")
    shutil.copy(_LIBRARY, copy)  # a plugin system that loads a fresh copy per call: ctypes never unloads it
    ctypes.CDLL(copy)
    os.unlink(copy)


def _remember(item, seen=[]):
    seen.append(item)


@pytest.mark.max_leak_score(0.1)
def test_leak_default_argument_that_accumulates():
    _remember(bytes(10_000))


EVENTS = {"received": [], "sent": []}


@pytest.mark.max_leak_score(0.1)
def test_leak_list_kept_inside_a_module_dict():
    EVENTS["received"].append(bytes(10_000))


@pytest.mark.max_leak_score(0.1)
def test_leak_codec_search_function_registered_per_call():
    table = bytes(10_000)
    codecs.register(lambda name, table=table: None)


@pytest.mark.max_leak_score(0.1)
def test_leak_atexit_callback_registered_per_call():
    atexit.register(lambda report=bytes(10_000): None)


@pytest.mark.max_leak_score(0.1)
def test_leak_signal_handler_chained_per_call():
    previous = signal.getsignal(signal.SIGUSR2)

    def handler(signum, frame, previous=previous, state=bytes(10_000)):
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGUSR2, handler)


_variables = itertools.count()


@pytest.mark.max_leak_score(0.1)
def test_leak_context_variable_created_per_call():
    contextvars.ContextVar(f"request_{next(_variables)}").set(bytes(10_000))


NATIVE_ADDRESSES = []


@pytest.mark.max_leak_score(0.1)
def test_leak_native_buffer_beside_a_little_python_state():
    address = _libc.malloc(48 * 1024)  # a C library's buffer, never freed ...
    ctypes.memset(address, 1, 48 * 1024)
    NATIVE_ADDRESSES.append(address)  # ... and its address kept: a few bytes of Python memory a run
