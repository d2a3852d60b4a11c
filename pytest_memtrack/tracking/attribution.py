"""Which package holds how many bytes.

Two readings, chosen for cost (the plugin runs around every test of a user's suite):

* **Module state** (`package_state_bytes`, `measure_packages`): the ``sys.getsizeof`` total of every object
  reachable from a package's modules' globals through what gc reports as referents (``tp_traverse``). The walk
  stops at module objects and at classes and functions that belong to another package, and counts each object
  once per pass (an object reachable from two packages is counted for the first one walked). It sees what a
  package *keeps* — module-level caches, registries, class attributes — which is where leaks that outlive a test
  live. It cannot see memory held only by native code (use RSS), objects the package allocates but hands to
  somebody else to keep, or what gc does not report (the string keys of a dict whose keys are all strings; the
  dict's own size, which grows with its entries, is counted).
  Two walkers give identical figures: the C extension ``_reach.Walker`` (about 0.1 µs per object; built at install
  when a compiler is present) and the pure-Python ``PyWalker`` (about 0.7 µs per object), used when the extension
  is missing or ``PYTEST_MEMTRACK_NO_C=1`` is set. See ``benchmarks/bench_attribution.py``.
* **Allocation site** (`file_to_package`): while tracemalloc traces, an allocation's file is mapped back to the
  top-level package that owns it, for leak evidence and import footprints.
"""

from __future__ import annotations

import gc
import operator
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from itertools import compress
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

_BOUNDARY_SUBCLASSES = (ModuleType, type, BuiltinFunctionType)
_BOUNDARY_EXACT = frozenset({FunctionType, MethodType})


#: The test harness: pytest, its plugin machinery, xdist and this plugin. What they keep per test (a report, a
#: finalizer on a session fixture) is bookkeeping that ends with the session, never the code under test's leak.
HARNESS_PACKAGES = frozenset({"_pytest", "pytest", "pluggy", "xdist", "execnet", "pytest_memtrack"})


def is_harness(module_name: str) -> bool:
    """Whether ``module_name`` (dotted) belongs to the test harness: ``HARNESS_PACKAGES`` or a ``pytest_*`` plugin."""
    package = module_name.partition(".")[0]
    return package in HARNESS_PACKAGES or package.startswith("pytest_")


def top_level(module_name: str) -> str:
    return module_name.partition(".")[0]


def package_modules(package: str) -> list[ModuleType]:
    """The loaded modules of ``package`` (the package itself and its submodules)."""
    prefix = package + "."
    return [m for name, m in list(sys.modules.items())
            if isinstance(m, ModuleType) and (name == package or name.startswith(prefix)) and not is_test_module(m)]


def _belongs(obj: object, package: str, prefix: str) -> bool:
    """Whether a class, function or method is the package's own: its ``__module__`` names the package or one of
    its submodules. An object whose ``__module__`` cannot be read is not the package's (the pass goes on)."""
    try:
        owner = getattr(obj, "__module__")  # noqa: B009  (any exception, not only AttributeError)
    except Exception:
        return False
    return isinstance(owner, str) and (owner == package or owner.startswith(prefix))


def is_test_module(module: object) -> bool:
    """Test modules and conftests: loaded by a finder that is its own loader (pytest's assertion rewriter). Their
    state is the test suite's (fixture definitions, parametrize data), not the project's."""
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    return loader is not None and any(loader is finder for finder in sys.meta_path)


def is_test_suite_package(members: dict[str, object]) -> bool:
    """Whether a top-level package's loaded modules (name -> module) are the test suite's own: at least one test
    module, and every other module an empty package on the way to one (``tests/__init__.py``,
    ``tests/unit/__init__.py``: no public names but submodules). A project package with tests inside it
    (``mypkg/tests/test_x.py``) has code of its own in ``mypkg/__init__.py`` or other modules, so it stays a
    project package."""
    tests = [name for name, module in members.items() if is_test_module(module)]
    if not tests:
        return False
    return all(is_test_module(module) or (_is_empty_package(module)
                                          and any(test.startswith(name + ".") for test in tests))
               for name, module in members.items())


def _is_empty_package(module: object) -> bool:
    if not hasattr(module, "__path__"):
        return False
    return not any(not name.startswith("_") and not isinstance(value, ModuleType)
                   for name, value in list(getattr(module, "__dict__", {}).items()))


def modules_by_package(packages: Iterable[str] | None = None) -> dict[str, list[ModuleType]]:
    """Loaded modules grouped by top-level package, in one scan of ``sys.modules`` (test modules left out); only
    those of ``packages`` when given (a pass tracks a few packages of the hundreds loaded: the test-module check,
    a microsecond per module, is made for their modules only)."""
    wanted = None if packages is None else frozenset(packages)
    groups: dict[str, list[ModuleType]] = {}
    for name, module in list(sys.modules.items()):
        package = name.partition(".")[0]
        if (wanted is None or package in wanted) and isinstance(module, ModuleType) and not is_test_module(module):
            groups.setdefault(package, []).append(module)
    return groups


def _is_boundary_type(kind: type) -> bool:
    """Modules, classes, functions and methods: where one package's state ends and another's may begin."""
    return issubclass(kind, _BOUNDARY_SUBCLASSES) or kind in _BOUNDARY_EXACT


def _safe_getsizeof(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a broken __sizeof__: count the type's basic size, as the C walker does
        return type(obj).__basicsize__


class PyWalker:
    """One attribution pass in pure Python: counts each object once across its walks.

    Breadth-first in batches, with the per-object work done by C-level ``map``/``compress`` so the cost stays
    near a microsecond per object; only boundary objects (modules, classes, functions) get a Python-level check.
    ``_reach.Walker`` is the same reading in C, used when the extension is built.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._seen.add(id(self._seen))  # the pass's own bookkeeping is never counted

    def mark(self, objects: Iterable[object]) -> None:
        """Treat ``objects`` as already counted (and never enter them)."""
        self._seen.update(map(id, objects))

    def walk(self, roots: Iterable[object], keep: Callable[[object], bool] | str) -> int:
        """``sys.getsizeof`` bytes of what ``roots`` reach and no earlier walk counted. Modules are never entered;
        classes, functions and methods only when ``keep(obj)`` is true, or, when ``keep`` is a package name, when
        their ``__module__`` is that package or one of its submodules."""
        if isinstance(keep, str):
            package, prefix = keep, keep + "."
            keep = lambda obj: _belongs(obj, package, prefix)  # noqa: E731
        seen = self._seen
        total = 0
        refs = list(roots)
        while refs:
            by_id = dict(zip(map(id, refs), refs))  # also drops duplicates within the batch
            deque(map(by_id.__delitem__, by_id.keys() & seen), maxlen=0)
            seen.update(by_id)
            objs = list(by_id.values())
            kinds = list(map(type, objs))
            boundary = {kind for kind in set(kinds) if _is_boundary_type(kind)}
            if boundary:
                mask = list(map(boundary.__contains__, kinds))
                batch = list(compress(objs, map(operator.not_, mask)))
                batch += [o for o in compress(objs, mask) if not isinstance(o, ModuleType) and keep(o)]
            else:
                batch = objs
            try:
                total += sum(map(sys.getsizeof, batch))
            except Exception:
                total += sum(map(_safe_getsizeof, batch))
            refs = gc.get_referents(*batch)
        return total


def _c_walker() -> type | None:
    if os.environ.get("PYTEST_MEMTRACK_NO_C"):
        return None
    try:
        from pytest_memtrack._reach import Walker
    except ImportError:  # not built (no compiler at install time): the Python walker gives the same figures
        return None
    return Walker


Walker = _c_walker() or PyWalker
"""The walker attribution passes use: the C extension when it is built, else ``PyWalker``."""

WALKER_IMPLEMENTATION = "python" if Walker is PyWalker else "c"


def _walk(package: str, walker: Any, modules: list[ModuleType] | None = None) -> int:
    """Bytes reachable from ``package``'s module globals that the walker has not counted yet."""
    if modules is None:
        modules = package_modules(package)
    walker.mark(modules)
    namespaces = [namespace for namespace in map(_namespace, modules) if namespace is not None]
    return walker.walk(namespaces, package)


def _namespace(module: ModuleType) -> dict | None:
    return getattr(module, "__dict__", None)


def package_state_bytes(package: str) -> int:
    """Bytes reachable from one package's module state (0 when it is not imported)."""
    return _walk(top_level(package), Walker())


def measure_packages(packages: Iterable[str], walker_type: type | None = None) -> dict[str, int]:
    """One attribution pass: module-state bytes per package, each object counted once across the pass.

    ``walker_type`` picks an implementation (``PyWalker`` or the C ``Walker``); both give the same figures."""
    packages = list(packages)
    if not packages:
        return {}
    walker = (walker_type or Walker)()
    groups = modules_by_package(name for name in packages if "." not in name)
    return {name: _walk(name, walker, package_modules(name) if "." in name else groups.get(name, []))
            for name in packages}


class FileIndex:
    """Maps source file names to top-level package names, rebuilt when ``sys.modules`` changes size."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = -1
        self._files: dict[str, str] = {}
        self._dirs: list[tuple[str, str]] = []

    def _rebuild(self) -> None:
        files: dict[str, str] = {}
        dirs: dict[str, str] = {}
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if not isinstance(path, str):
                continue
            package = top_level(name)
            files[os.path.abspath(path)] = name if package == "__main__" else name
            if "." not in name and os.path.basename(path).startswith("__init__."):
                dirs[os.path.dirname(os.path.abspath(path)) + os.sep] = package
        self._files = files
        self._dirs = sorted(dirs.items(), key=lambda item: -len(item[0]))
        self._size = len(sys.modules)

    def module_for(self, filename: str) -> str | None:
        """The module whose source is ``filename`` (or the package whose directory holds it)."""
        with self._lock:
            if self._size != len(sys.modules):
                self._rebuild()
            path = os.path.abspath(filename)
            found = self._files.get(path)
            if found is not None:
                return found
            for directory, package in self._dirs:
                if path.startswith(directory):
                    return package
        return None


file_index = FileIndex()
