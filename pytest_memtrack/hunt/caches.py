"""The interpreter's and the standard library's bounded caches, emptied before each reading of a hunt.

Each keeps what a test computed from its arguments until evicted, so it grows for a while when every run brings
new arguments, then stops: growth that is bounded and not the test's leak. CPython's refleak hunter empties the
same caches (``Lib/test/libregrtest/utils.py: clear_caches``).
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from typing import Any

#: The type of a ``functools.lru_cache`` wrapper (the C implementation's, where there is one).
LRU_CACHE_TYPE = type(functools.lru_cache(maxsize=1)(len))


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
hunt_lru_caches: list[Any] = []


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
    for cache in hunt_lru_caches:
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


def regex_caches() -> dict[str, dict[Any, Any]]:
    """A copy of ``re``'s caches of compiled patterns (``_cache``, and ``_cache2`` on 3.12+), to put back after a
    hunt (``restore_regex_caches``): the readings empty them, and what the harness compiled before the hunt (JUnit
    XML's escape of illegal characters, a pattern of every Unicode range: a millisecond to compile) would otherwise
    be compiled again after every hunted test."""
    module = sys.modules.get("re")
    return {name: dict(cache) for name in ("_cache", "_cache2")
            if isinstance(cache := getattr(module, name, None), dict)}


def restore_regex_caches(saved: dict[str, dict[Any, Any]]) -> None:
    module = sys.modules.get("re")
    for name, entries in saved.items():
        cache = getattr(module, name, None)
        if isinstance(cache, dict):
            for key, value in entries.items():
                cache.setdefault(key, value)
