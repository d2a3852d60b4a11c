"""Which package holds how many bytes.

Two readings, chosen for cost (the plugin runs around every test of a user's suite):

* **Module state** (`package_state_bytes`, `measure_packages`): the ``sys.getsizeof`` total of every object
  reachable from a package's modules' globals, walking ``gc.get_referents`` breadth-first in batches. The walk
  stops at module objects and at classes and functions that belong to another package, and counts each object
  once per pass (an object reachable from two packages is counted for the first one walked). It sees what a
  package *keeps* — module-level caches, registries, class attributes — which is where leaks that outlive a test
  live. It cannot see memory held only by native code (use RSS) or objects the package allocates but hands to
  somebody else to keep. Cost: about a microsecond per reachable object (see ``benchmarks/bench_attribution.py``).
* **Allocation site** (`file_to_package`): while tracemalloc traces, an allocation's file is mapped back to the
  top-level package that owns it, for leak evidence and import footprints.
"""

from __future__ import annotations

import gc
import operator
import os
import sys
import threading
from collections.abc import Iterable
from collections import deque
from itertools import compress
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType

_SPECIAL_KINDS = frozenset({ModuleType, FunctionType, BuiltinFunctionType, MethodType})


def top_level(module_name: str) -> str:
    return module_name.partition(".")[0]


def package_modules(package: str) -> list[ModuleType]:
    """The loaded modules of ``package`` (the package itself and its submodules)."""
    prefix = package + "."
    return [m for name, m in list(sys.modules.items())
            if isinstance(m, ModuleType) and (name == package or name.startswith(prefix)) and not is_test_module(m)]


def _belongs(obj: object, package: str, prefix: str) -> bool:
    owner = getattr(obj, "__module__", None)
    return isinstance(owner, str) and (owner == package or owner.startswith(prefix))


def is_test_module(module: object) -> bool:
    """Test modules and conftests: loaded by a finder that is its own loader (pytest's assertion rewriter). Their
    state is the test suite's (fixture definitions, parametrize data), not the project's."""
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    return loader is not None and any(loader is finder for finder in sys.meta_path)


def modules_by_package() -> dict[str, list[ModuleType]]:
    """Loaded modules grouped by top-level package, in one scan of ``sys.modules`` (test modules left out)."""
    groups: dict[str, list[ModuleType]] = {}
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType) and not is_test_module(module):
            groups.setdefault(name.partition(".")[0], []).append(module)
    return groups


def _walk(package: str, seen: set[int], modules: list[ModuleType] | None = None) -> int:
    """Bytes reachable from ``package``'s module globals that no earlier walk in this pass has counted.

    Breadth-first in batches, with the per-object work done by C-level ``map``/``compress`` so the cost stays
    near a few hundred nanoseconds per object; only modules, classes and functions get a Python-level check.
    """
    prefix = package + "."
    frontier: list[object] = []
    for module in package_modules(package) if modules is None else modules:
        seen.add(id(module))
        namespace = getattr(module, "__dict__", None)
        if namespace is not None and id(namespace) not in seen:
            seen.add(id(namespace))
            frontier.append(namespace)
    getsizeof = sys.getsizeof
    total = sum(map(getsizeof, frontier))
    while frontier:
        refs = gc.get_referents(*frontier)
        by_id = dict(zip(map(id, refs), refs))  # also drops duplicates within the batch
        deque(map(by_id.__delitem__, by_id.keys() & seen), maxlen=0)
        seen.update(by_id)
        objs = list(by_id.values())
        kinds = list(map(type, objs))
        # Modules, classes and functions are checked in Python, once per distinct type present in the batch.
        special = {k for k in set(kinds) if k in _SPECIAL_KINDS or issubclass(k, type)}
        if special:
            mask = list(map(special.__contains__, kinds))
            batch = list(compress(objs, map(operator.not_, mask)))
            batch += [o for o in compress(objs, mask) if type(o) is not ModuleType and _belongs(o, package, prefix)]
        else:
            batch = objs
        total += sum(map(getsizeof, batch))
        frontier = batch
    return total


def package_state_bytes(package: str) -> int:
    """Bytes reachable from one package's module state (0 when it is not imported)."""
    return _walk(top_level(package), set())


def measure_packages(packages: Iterable[str]) -> dict[str, int]:
    """One attribution pass: module-state bytes per package, each object counted once across the pass."""
    seen: set[int] = set()
    # The objects of this pass itself must not be counted.
    seen.add(id(seen))
    groups = modules_by_package()
    return {name: _walk(name, seen, package_modules(name) if "." in name else groups.get(name, []))
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

    def package_for(self, filename: str) -> str | None:
        module = self.module_for(filename)
        return top_level(module) if module else None


file_index = FileIndex()
