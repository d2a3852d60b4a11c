"""Unloading packages, by hand (``LazyLoader.unload``) or automatically under memory pressure (opt-in).

Unloading removes a package and its submodules from ``sys.modules``, drops the loader's reference and runs the
garbage collector; weak references to the package's module object and to a sentinel put in its globals then say
whether both were really freed (a function imported elsewhere keeps its module's globals after the module is gone). What
it cannot free: objects other code still references (a ``from pkg import x`` elsewhere, a module-level ``import pkg``
in another module), memory of extension modules (CPython never unloads shared libraries), interned strings and the
allocator's free lists (RSS often does not shrink).

**Automatic unloading** (``LazyLoader(auto_unload=True)``, ``--memtrack-auto-unload``; off by default): when the
system's pressure level (``MemoryMonitor.get_memory_pressure_level``) reaches ``high`` or ``critical`` at a reading
pass, every package *loaded lazily* (``LazyLoader.lazy``/``load``, not an ordinary import the loader observed) that
has not been used for ``unload_idle_seconds`` is unloaded. One whose module object stays referenced is put back
(its modules return to ``sys.modules`` and it stays ``loaded``): removing it would free nothing and the next use
would import a second copy. :class:`AutoUnloadLog` records both outcomes for the summary payload's
``auto_unload``: what was freed, with the module-state bytes it held (``attribution``, read just before) and the
change in process RSS, and what could not be freed, with who still holds it.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import CellType, FrameType, FunctionType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_memtrack.tracking.loader import LazyLoader
    from pytest_memtrack.tracking.monitor import MemoryMonitor

#: Idle time after which a lazily loaded package may be unloaded under pressure (seconds).
DEFAULT_UNLOAD_IDLE = 300.0
#: The pressure levels at which automatic unloading acts.
UNLOAD_PRESSURE = ("high", "critical")


@dataclass(frozen=True)
class Candidate:
    """What the idle rule reads of one package (a plain snapshot, so the rule stays pure)."""

    name: str
    status: str
    lazily_loaded: bool
    last_used: float | None


def idle_packages(candidates: Iterable[Candidate], pressure: str, now: float, idle_seconds: float) -> list[str]:
    """The packages to unload: at ``high``/``critical`` pressure, the lazily loaded ones idle >= ``idle_seconds``."""
    if pressure not in UNLOAD_PRESSURE:
        return []
    return [c.name for c in candidates if c.lazily_loaded and c.status == "loaded" and c.last_used is not None
            and now - c.last_used >= idle_seconds]


def _describe(referrer: object) -> str | None:
    if isinstance(referrer, dict):
        owner = next((name for name, m in list(sys.modules.items()) if getattr(m, "__dict__", None) is referrer), None)
        return f"the globals of module {owner!r}" if owner else "a dict"
    if isinstance(referrer, FunctionType):  # and the modules whose globals hold that function
        owners = [_describe(r) for r in gc.get_referrers(referrer) if isinstance(r, dict) and r is not
                  referrer.__globals__]
        where = f" (in {', '.join(o for o in owners if o and o != 'a dict')})" if any(
            o and o != "a dict" for o in owners) else ""
        return f"function {referrer.__module__}.{referrer.__qualname__}{where}"
    # Frames and cells: the look-up's own (a closure's cell holds the target while _holders runs).
    return None if isinstance(referrer, (FrameType, CellType, _Sentinel)) else f"a {type(referrer).__name__}"


def _holders(target: object) -> str:
    """Who references ``target`` (a module, or a module's globals): the modules whose globals hold it, functions,
    local variables of running functions in this thread, else the referrers' types (the first three)."""
    names = [name for name in map(_describe, gc.get_referrers(target)) if name]
    frame: FrameType | None = sys._getframe()  # running functions' locals are no gc referrers: walk the stack
    while frame is not None:
        code = frame.f_code
        if code.co_filename != __file__ and any(value is target for value in frame.f_locals.values()):
            names.append(f"a local variable of {code.co_name}() ({code.co_filename}:{frame.f_lineno})")
        frame = frame.f_back
    unique = list(dict.fromkeys(names))
    return ", ".join(unique[:3]) + (" and more" if len(unique) > 3 else "") if unique else "an unknown referrer"


class _Sentinel:
    """Put in a package's globals while it is unloaded: alive afterwards means the globals are (a function
    imported elsewhere keeps its module's globals, and everything in them, after the module object is gone)."""


_SENTINEL_KEY = "__memtrack_unload_sentinel__"


def _watch_globals(import_name: str) -> weakref.ref[_Sentinel] | None:
    module = sys.modules.get(import_name)
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return None
    sentinel = _Sentinel()
    namespace[_SENTINEL_KEY] = sentinel
    return weakref.ref(sentinel)


def _globals_holders(watch: weakref.ref[_Sentinel] | None) -> str | None:
    """Who keeps the unloaded package's globals alive (None: nobody, they were freed); removes the sentinel."""
    sentinel = watch() if watch is not None else None
    if sentinel is None:
        return None
    namespaces = [r for r in gc.get_referrers(sentinel) if isinstance(r, dict) and r.get(_SENTINEL_KEY) is sentinel]
    del sentinel
    for namespace in namespaces:
        namespace.pop(_SENTINEL_KEY, None)
    if not namespaces:
        return "its globals"
    target = namespaces[0]
    namespaces.clear()  # the list would be one more referrer
    return f"its globals, held by {_holders(target)}"


def unload_modules(import_name: str, monitor: MemoryMonitor, *, restore_if_referenced: bool = False,
                   drop: Any = None) -> dict[str, Any]:
    """Remove ``import_name`` and its submodules from ``sys.modules``, collect, and report what was freed.

    Freed means both the package's module object and its globals were collected (weak references tell). ``drop()``
    is called after the removal to release the caller's own reference (the loader's ``info.module``).
    ``restore_if_referenced``: when the module object survives the collection, put the removed modules back into
    ``sys.modules`` (the result then says ``restored``); globals that outlive their module cannot be put back.
    """
    prefix = import_name + "."
    doomed = [m for m in list(sys.modules) if m == import_name or m.startswith(prefix)]
    refs: dict[str, weakref.ref[ModuleType]] = {}
    for module_name in doomed:
        try:
            refs[module_name] = weakref.ref(sys.modules[module_name])
        except (TypeError, KeyError):
            pass
    watch = _watch_globals(import_name)
    state_before = monitor.get_memory_footprint(import_name) if doomed else 0.0
    rss_before = monitor.get_current_memory_usage()
    for module_name in doomed:
        sys.modules.pop(module_name, None)
    if drop is not None:
        drop()
    collected = gc.collect()
    rss_after = monitor.get_current_memory_usage()
    root_ref = refs.get(import_name)
    root = root_ref() if root_ref is not None else None
    held_by = _holders(root) if root is not None else None
    globals_held_by = _globals_holders(watch)  # also takes the sentinel out again
    restored = False
    if root is not None and restore_if_referenced:
        for module_name, ref in refs.items():
            module = ref()
            if module is not None:
                sys.modules.setdefault(module_name, module)
        restored = True
    still_referenced = root is not None or globals_held_by is not None
    del root
    if held_by is None and globals_held_by is not None:
        held_by = globals_held_by
    return {
        "modules_removed": len(doomed),
        "module_state_released": 0.0 if still_referenced else state_before,
        "memory_before": rss_before,
        "memory_after": rss_after,
        "memory_freed": max(0.0, rss_before - rss_after),
        "objects_collected": collected,
        "still_referenced": still_referenced,
        "held_by": held_by,
        "restored": restored,
        "note": ("the package is still referenced elsewhere; its memory stays until that reference goes"
                 + ("" if restored else ", and its next use imports a fresh copy") if still_referenced else
                 "module state released; native extension memory and allocator free lists are not returned"),
    }


@dataclass
class AutoUnloadLog:
    """What automatic unloading did in a session (the summary payload's ``auto_unload``)."""

    enabled: bool = False
    idle_seconds: float = DEFAULT_UNLOAD_IDLE
    freed: list[dict[str, Any]] = field(default_factory=list)
    not_freed: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, name: str, pressure: str, idle: float, result: dict[str, Any]) -> None:
        entry = {"package_name": name, "time": time.time(), "pressure": pressure, "idle_seconds": idle}
        with self.lock:
            if result["still_referenced"]:
                self.not_freed.append({**entry, "reason": f"still referenced by {result['held_by']}"})
            else:
                self.freed.append({**entry, "modules_removed": result["modules_removed"],
                                   "module_state_bytes": result["module_state_released"],
                                   "rss_freed": result["memory_freed"]})

    def to_payload(self) -> dict[str, Any]:
        with self.lock:
            freed = [dict(e) for e in self.freed]
            not_freed = [dict(e) for e in self.not_freed]
        return {"enabled": self.enabled, "idle_seconds": self.idle_seconds, "pressure_levels": list(UNLOAD_PRESSURE),
                "freed": freed, "not_freed": not_freed,
                "bytes_freed": sum(e["module_state_bytes"] for e in freed)}


def unload_idle(loader: LazyLoader, pressure: str | None = None) -> list[dict[str, Any]]:
    """One automatic pass over ``loader``: at high or critical pressure (read now unless given), unload its lazily
    loaded packages idle for ``auto_unload.idle_seconds``, keeping those that would not be freed; every outcome is
    recorded in ``loader.auto_unload``. Returns the unload results."""
    log = loader.auto_unload
    level = pressure or loader.monitor.get_memory_pressure_level()
    now = time.time()
    infos = {i.name: i for i in loader.packages()}
    candidates = [Candidate(i.name, i.status, not i.observed, i.last_used) for i in infos.values()]
    results = []
    for name in idle_packages(candidates, level, now, log.idle_seconds):
        idle = now - (infos[name].last_used or now)
        result = loader.unload(name, restore_if_referenced=True)
        log.record(name, level, idle, result)
        results.append(result)
    return results
