"""What modules keep by name: every container, string and memoization cache reachable from a module's globals,
its classes' and instances' attributes and the meta-path finders, and their sizes (``named_sizes``). Compared before
and after a hunt's runs, the ones that grew every run are where a leak is kept (``retention.grown_holders``),
whether or not the garbage collector tracks what they hold.

A name is the one a user would look the object up by, whoever else refers to it (``canonical_objects``): the module
that defines it rather than one that imported it, a module by its own name rather than an alias, a meta-path finder
by ``sys.meta_path`` rather than by the ``__loader__`` of a module it loaded (import-system attributes name
nothing), then the shortest name.
"""

from __future__ import annotations

import sys
import weakref
from collections import deque
from collections.abc import Iterator
from types import FunctionType, ModuleType
from typing import Any

from pytest_memtrack.hunt.caches import LRU_CACHE_TYPE
from pytest_memtrack.hunt.registries import registry_sizes
from pytest_memtrack.tracking.attribution import HARNESS_PACKAGES, is_harness

#: Module attributes the import system sets: what they refer to (a loader, a spec, the builtins) is shared by many
#: modules and is named where it lives (``sys.meta_path``, ``builtins``), never as ``some_module.__loader__``.
IMPORT_ATTRIBUTES = frozenset({"__loader__", "__spec__", "__builtins__", "__cached__", "__file__", "__package__",
                                "__name__", "__path__", "__doc__"})


def type_name(obj: object) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


SIZED = (list, dict, set, deque, str, bytes, bytearray)
#: Module state that belongs to the test runner or to the hunt itself, not to the code under test.
RUNNER_PACKAGES = HARNESS_PACKAGES | {"tracemalloc"}


WEAK = "weak references"


def holds_weak_references(value: object) -> bool:
    """A list or set of weak references (``WeakSet.data``, ``logging._handlerList``) keeps nothing alive."""
    if isinstance(value, (list, set)) and value:
        try:
            sample = value[-1] if isinstance(value, list) else next(iter(value))
        except Exception:
            return False
        return isinstance(sample, weakref.ReferenceType)
    return False


def instance_dict(obj: object) -> dict[str, Any]:
    """An instance's ``__dict__`` without running its class's attribute hooks (empty when it has none)."""
    if not type(obj).__dictoffset__:
        return {}
    try:
        attributes = object.__getattribute__(obj, "__dict__")
    except Exception:
        return {}
    return attributes if isinstance(attributes, dict) else {}


def _lru_currsize(value: object) -> int | None:
    if type(value) is not LRU_CACHE_TYPE:  # never duck-type: attribute access on a stranger's object can do anything
        return None
    try:
        return int(value.cache_info().currsize)  # type: ignore[attr-defined, unused-ignore]
    except Exception:
        return None


def tracked_modules() -> list[tuple[str, ModuleType]]:
    """Modules whose state can hold a test's leak, each once by its own name (``module.__name__`` when sys.modules
    knows it by it, else its shortest name there): all but the test runner's and the hunt's own (known by any
    name)."""
    names: dict[int, list[str]] = {}
    found: dict[int, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType) and isinstance(getattr(module, "__dict__", None), dict):
            names.setdefault(id(module), []).append(name)
            found[id(module)] = module
    tracked = []
    for key, aliases in names.items():
        if any(is_harness(name) or name.partition(".")[0] == "tracemalloc" for name in aliases):
            continue
        module = found[key]
        own = module.__dict__.get("__name__")
        tracked.append((own if own in aliases else min(aliases, key=lambda name: (len(name), name)), module))
    return tracked


#: How canonical a name is, best first: in the module that defines the object; where the import system keeps it
#: (``sys.meta_path``); in any other module that refers to it.
_DEFINED, _IMPORT_ROOT, _REFERRED = 0, 1, 2


def _named_objects() -> Iterator[tuple[tuple[str, ...], object, int]]:
    """(name parts, object, how canonical the name is) for what modules keep by name: globals that are containers,
    strings, ``lru_cache`` functions or instances, the container attributes of their classes and instances
    (``logging.root.handlers``), and those of the meta-path finders. An object kept under several names comes
    once per name. It runs under tracing, so it copies no namespace (each copy would be thousands of traced
    allocations) and yields only what it names; a namespace another thread changes meanwhile is skipped."""
    kinds: dict[type, int] = {}  # for this walk only: a type kept here would outlive the test that made it
    for module_name, module in tracked_modules():
        try:
            yield from _module_objects(module_name, module, module.__dict__, kinds)
        except RuntimeError:  # dictionary changed size during iteration
            continue
    yield from _finder_objects()


def _defined_in(home: object, module: ModuleType) -> bool:
    """Whether ``home`` (a ``__module__``) names ``module``, under whichever of its names."""
    return isinstance(home, str) and sys.modules.get(home) is module


#: What a module global is to the walk, by its type (``_kind``).
_SKIPPED, _CONTAINER, _FUNCTION, _LRU, _CLASS, _INSTANCE = range(6)


def _kind(cls: type) -> int:
    """What the walk does with a value of type ``cls``: decided by the type alone, never by asking the value (a
    proxy's ``__class__`` can claim anything), once per type and walk."""
    if issubclass(cls, SIZED):
        return _CONTAINER
    if cls is FunctionType:
        return _FUNCTION
    if cls is LRU_CACHE_TYPE:
        return _LRU
    if issubclass(cls, type):
        return _CLASS
    if issubclass(cls, ModuleType) or not cls.__dictoffset__:
        return _SKIPPED
    return _INSTANCE  # its instances have a __dict__


def _module_objects(module_name: str, module: ModuleType, namespace: dict[str, Any],
                    kinds: dict[type, int]) -> Iterator[tuple[tuple[str, ...], object, int]]:
    sized, lru = SIZED, LRU_CACHE_TYPE
    for key, value in namespace.items():
        cls = type(value)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = _kind(cls)
        if kind == _SKIPPED or key in IMPORT_ATTRIBUTES:
            continue
        if kind == _CONTAINER:
            yield (module_name, key), value, _REFERRED
            if cls is dict and len(value) <= _NESTED_ITEMS:
                yield from _nested(module_name, key, value)
        elif kind == _FUNCTION:
            yield from _mutable_defaults(module_name, key, value, module)
        elif kind == _LRU:
            home = instance_dict(value).get("__module__")
            yield (module_name, key), value, _DEFINED if _defined_in(home, module) else _REFERRED
        elif kind == _CLASS:
            try:
                members = type.__getattribute__(value, "__dict__")
                qualname = value.__qualname__
            except Exception:
                continue
            if _defined_in(members.get("__module__"), module):
                for attribute, member in members.items():
                    if isinstance(member, sized) or type(member) is lru:
                        yield (module_name, qualname, attribute), member, _DEFINED
        else:
            rank = _DEFINED if _defined_in(cls.__module__, module) else _REFERRED
            yield (module_name, key), value, rank
            for attribute, member in instance_dict(value).items():
                if isinstance(member, sized) or type(member) is lru:
                    yield (module_name, key, attribute), member, rank


#: A dict kept by name is looked into for containers kept under its keys (``STATE["events"]``) when it is this small:
#: a registry of a few sections, not a cache of thousands of entries (looking into those costs, names nothing).
_NESTED_ITEMS = 64


def _nested(module_name: str, key: str, mapping: dict[Any, Any]) -> Iterator[tuple[tuple[str, ...], object, int]]:
    """The containers a small dict kept by name holds under string keys: ``module.STATE['events']``."""
    for inner_key, inner in list(mapping.items()):
        if isinstance(inner_key, str) and isinstance(inner, (list, dict, set, deque)):
            yield (module_name, f"{key}[{inner_key!r}]"), inner, _REFERRED


def _mutable_defaults(module_name: str, key: str, function: FunctionType,
                      module: ModuleType) -> Iterator[tuple[tuple[str, ...], object, int]]:
    """The containers a function defined in ``module`` keeps as default arguments (``def f(x, seen=[])``): one
    object for every call, so what a call adds stays. Named so only when no module global names the same object
    (toolz's ``signatures`` registry is a global that a function also takes as its default)."""
    defaults = function.__defaults__
    if defaults and any(isinstance(value, (list, dict, set, deque)) for value in defaults) \
            and _defined_in(function.__module__, module):
        code = function.__code__
        names = code.co_varnames[:code.co_argcount][-len(defaults):]
        for name, value in zip(names, defaults):
            if isinstance(value, (list, dict, set, deque)):
                yield (module_name, key, f"<default of {name}>"), value, _REFERRED
    for name, value in (function.__kwdefaults__ or {}).items():
        if isinstance(value, (list, dict, set, deque)) and _defined_in(function.__module__, module):
            yield (module_name, key, f"<default of {name}>"), value, _REFERRED


def _finder_objects() -> Iterator[tuple[tuple[str, ...], object, int]]:
    """The container attributes of the meta-path finders that are instances (pytest's assertion rewriter, a
    package's import hook): ``sys.meta_path[<type>].attribute``, harness or not: a cache the import of the test's
    modules fills is where its growth is kept."""
    sized, lru = SIZED, LRU_CACHE_TYPE
    for finder in list(sys.meta_path):
        if isinstance(finder, (type, ModuleType)):
            continue  # a class: named by its module
        label = f"meta_path[<{type_name(finder)}>]"
        for attribute, member in instance_dict(finder).items():
            if isinstance(member, sized) or type(member) is lru:
                yield ("sys", label, attribute), member, _IMPORT_ROOT


def _name_length(name: tuple[str, ...]) -> int:
    return sum(part.count(".") + 1 for part in name)


def canonical_objects() -> dict[int, tuple[tuple[str, ...], object, int]]:
    """id of each object ``_named_objects`` names -> (its canonical name, the object, how canonical): the most
    canonical name, then the shortest, then the first in sorted order. Deciding only between the names of an
    object kept under several, it allocates nothing more for the others."""
    chosen: dict[int, tuple[tuple[str, ...], object, int]] = {}
    for name, value, rank in _named_objects():
        known = chosen.get(id(value))
        if known is None or (rank, _name_length(name), name) < (known[2], _name_length(known[0]), known[0]):
            chosen[id(value)] = (name, value, rank)
    return chosen


def _measurable(value: object) -> bool:
    """A container, string or memoization cache: what ``_size`` measures."""
    return isinstance(value, SIZED) or type(value) is LRU_CACHE_TYPE


def _size(value: object) -> tuple[int, str] | None:
    """(size, kind) of a container, string or memoization cache: ``len()``, or an ``lru_cache``'s ``currsize``;
    None for anything else (or a cache that cannot say)."""
    if isinstance(value, SIZED):
        return len(value), WEAK if holds_weak_references(value) else type(value).__name__
    if type(value) is LRU_CACHE_TYPE:
        currsize = _lru_currsize(value)
        return None if currsize is None else (currsize, "lru_cache")
    return None


def named_sizes(containers: dict[tuple[str, ...], object] | None = None) -> dict[tuple[str, ...], tuple[int, str]]:
    """The size of every container, string and memoization cache kept by name (see ``_named_objects``, ``_size``);
    keyed by the name's parts, joined only for a report. Compared before and after a hunt's runs, the ones that grew
    every run are where the leaked objects are kept, whether or not the garbage collector tracks those objects
    (strings, bytes). ``containers``, when given, receives each measured object by its name, for ``runs_to_fill``
    and ``sizes_again`` to measure again without a walk."""
    sizes: dict[tuple[str, ...], tuple[int, str]] = {}
    for name, value, _ in canonical_objects().values():
        size = _size(value)
        if size is not None:
            sizes[name] = size
            if containers is not None:
                containers[name] = value
    sizes.update(registry_sizes())
    return sizes


def sizes_again(before: dict[tuple[str, ...], tuple[int, str]],
                containers: dict[tuple[str, ...], object]) -> dict[tuple[str, ...], tuple[int, str]]:
    """``named_sizes`` of the names ``before`` measured, without a walk of every module's state (~30 ms in jinja2's
    suite): each name's object as ``named_sizes`` put it in ``containers``, or the one a module global, or an
    attribute of one, holds now if it was rebound to another (``CACHE = CACHE + [entry]``); and the registries.
    Names that appeared since are not measured: nothing before says they grew."""
    sizes: dict[tuple[str, ...], tuple[int, str]] = {}
    for name, kept in containers.items():
        size = _size(_bound_now(name, kept)) if name in before else None
        if size is not None:
            sizes[name] = size
    sizes.update(registry_sizes())
    return sizes


def _bound_now(name: tuple[str, ...], kept: object) -> object:
    """What ``module.global`` or ``module.global.attribute`` (a class's or an instance's) refers to now, when that
    is something ``named_sizes`` measures; else ``kept``."""
    module = sys.modules.get(name[0])
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict) or len(name) not in (2, 3):
        return kept
    if name[1] not in namespace:
        return kept
    current = namespace[name[1]]
    if len(name) == 3:
        members = type.__getattribute__(current, "__dict__") if isinstance(current, type) else instance_dict(current)
        current = members.get(name[2], kept)
    return current if _measurable(current) else kept
