"""Noticing packages imported the ordinary way, and measuring what each import costs.

``ImportObserver`` is a ``sys.meta_path`` finder placed first. It never finds anything itself: for a top-level
name it asks the finders after it, and when they return a spec whose loader is a plain instance it wraps that
instance's ``exec_module`` (an instance attribute, removed again after the import, so ``isinstance`` checks on
the loader keep working). The wrapper measures the import with ``FootprintMeter`` and reports it.

Footprint reading, without tracing (tracing every allocation of an import made a project's imports 2-20 times
slower: 0.9 s more at start-up on marshmallow's suite, most of it compiling its regular expressions): the larger of
two growths over the import, glibc's bytes in use (``hunt.native.malloc_in_use``: exact for every block over 512
bytes, Python's or a C extension's) and RSS (pages first touched: the small objects pymalloc keeps in its arenas,
native libraries mapped by extension modules; page-granular, and blind to memory reused from what was freed
before). Where malloc cannot be read, RSS alone. When something else traces (``--memtrack-trace-all``), the
traced bytes. Nested imports of other top-level packages are measured on their own and subtracted from the outer
one; a package's own submodules imported by its import are measured with it (the same sum, one reading pair).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from pytest_memtrack.hunt.native import malloc_in_use
from pytest_memtrack.tracking.process import current_rss
from pytest_memtrack.tracking.tracing import tracemalloc


def memory_reading() -> tuple[float, str]:
    """(bytes, source): traced bytes when tracemalloc traces, else RSS."""
    if tracemalloc.is_tracing():
        return float(tracemalloc.get_traced_memory()[0]), "tracemalloc"
    return float(current_rss()), "rss"


def _malloc() -> float:
    in_use = malloc_in_use()
    return float(in_use) if in_use is not None else 0.0


@dataclass(frozen=True)
class ImportMeasurement:
    package: str
    footprint: float
    source: str
    duration: float
    rss_before: float
    rss_after: float
    error: str | None = None


class FootprintMeter:
    """Measures nested imports exclusively: an import's footprint excludes the footprints of imports inside it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _stack(self) -> list[list[Any]]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def measuring(self, package: str) -> bool:
        """Whether this thread's innermost import being measured is one of ``package``'s modules (top-level name):
        then an import nested in it needs no measurement of its own, its bytes count to the same package."""
        stack = self._stack()
        return bool(stack) and stack[-1][1] == package

    def begin(self, package: str = "") -> tuple[float, str, float, float, float]:
        stack = self._stack()
        reading, source = memory_reading()
        rss = reading if source == "rss" else float(current_rss())  # read once when it is the reading
        stack.append([0.0, package.partition(".")[0]])  # bytes of nested measured imports, the top-level package
        return reading, source, time.perf_counter(), rss, _malloc()

    def end(self, package: str, token: tuple[float, str, float, float, float],
            error: str | None = None) -> ImportMeasurement:
        before, source, started, rss_before, malloc_before = token
        after, source_now = memory_reading()
        rss_after = after if source_now == "rss" else float(current_rss())
        if source_now != source:  # tracing switched on or off during the import: fall back to RSS for both ends
            before, after, source = rss_before, rss_after, "rss"
        if source == "rss":  # untraced: the larger of RSS's and malloc's growth (module doc)
            after = before + max(rss_after - rss_before, _malloc() - malloc_before)
        stack = self._stack()
        nested = stack.pop()[0] if stack else 0.0
        gross = max(0.0, after - before)
        if stack:
            stack[-1][0] += gross
        return ImportMeasurement(package, max(0.0, gross - nested), source, time.perf_counter() - started,
                                 rss_before, rss_after, error)


#: The wrapper around a loader's ``exec_module`` runs between the import system's frames and the module's body,
#: so its code must pass for one of the import system's own frames: the warnings machinery skips frames whose file
#: name contains both "importlib" and "_bootstrap" when it counts ``stacklevel`` (CPython's ``_is_internal_frame``),
#: and so do pytest's traceback filter and libraries that compute a stacklevel themselves. A module that warns at
#: import with ``stacklevel=2`` ("this module is deprecated") must name its importer, not this file: the warning's
#: location decides which ``filterwarnings`` entries match it, and ``pytest.warns`` checks on it.
_SHIM_FILENAME = "<frozen importlib._bootstrap (pytest_memtrack import observer)>"
_SHIM_SOURCE = """
def make(loader, original, observer, package):
    def exec_module(module):
        try:
            del loader.exec_module  # one-shot: later reloads run the loader untouched
        except AttributeError:
            pass
        token = observer.meter.begin(package)
        try:
            original(module)
        except BaseException as exc:
            observer._report(observer.meter.end(package, token, f"{type(exc).__name__}: {exc}"), None)
            raise
        observer._report(observer.meter.end(package, token), module)
    return exec_module
"""
_shim_namespace: dict[str, object] = {"__name__": __name__}
exec(compile(_SHIM_SOURCE, _SHIM_FILENAME, "exec"), _shim_namespace)
_make_exec_module: Callable[[object, Callable[[ModuleType], None], ImportObserver, str], Callable[[ModuleType], None]] \
    = _shim_namespace["make"]  # type: ignore[assignment]


class ImportObserver:
    """A meta-path finder that reports every module imported while it is installed (``skip`` filters them), each
    measured exclusively of the imports nested in it, so a package's footprint is the sum over its modules."""

    def __init__(self, on_import: Callable[[ImportMeasurement, ModuleType | None], None],
                 meter: FootprintMeter | None = None, skip: Callable[[str], bool] | None = None) -> None:
        self._on_import = on_import
        self.meter = meter or FootprintMeter()
        self._skip = skip
        self._busy = threading.local()

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if getattr(self._busy, "active", False) or fullname in sys.modules:
            return None
        if self._skip is not None and self._skip(fullname):
            return None
        self._busy.active = True
        try:
            spec = self._find_with_others(fullname, path, target)
        finally:
            self._busy.active = False
        # A submodule imported by its own package's import (marshmallow.fields by marshmallow) is not measured on its
        # own: the enclosing import's growth holds it, and the package's footprint is the same sum. Each measurement
        # reads malloc twice (~0.3 ms): jinja2's suite measured 91 imports, now one per package and crossing.
        if spec is not None and not self.meter.measuring(fullname.partition(".")[0]):
            self._wrap(spec, fullname)
        return spec

    def _find_with_others(self, fullname: str, path: Any, target: Any) -> ModuleSpec | None:
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def _wrap(self, spec: ModuleSpec, package: str) -> None:
        loader: Any = spec.loader
        if loader is None or isinstance(loader, type) or not hasattr(loader, "__dict__") or loader in sys.meta_path:
            # Shared loaders are never patched: class-level ones (builtins, frozen) and finders that are their own
            # loader (pytest's assertion rewriter, which imports test modules and conftests — not the project).
            return
        if "exec_module" in vars(loader) or not hasattr(loader, "exec_module"):
            return
        loader.exec_module = _make_exec_module(loader, loader.exec_module, self, package)

    def _report(self, measurement: ImportMeasurement, module: ModuleType | None) -> None:
        try:
            self._on_import(measurement, module)
        except Exception:  # observing must never break the user's import
            pass
