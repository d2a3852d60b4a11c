"""What keeps a leak alive: the pre-existing object (a module global, a class attribute, a registry) that the
objects a hunt's runs created and left behind hang from.

Allocation sites say where leaked memory was made; the holder says why it was not freed, which is what one has to
change. The search goes up from the surviving new objects through ``gc.get_referrers`` (one heap scan per level,
a few levels) until it reaches objects that existed before the hunt, then names those: ``module.global``,
``module.Class.attribute``, or ``<type>.attribute`` of an instance. Run only for a hunt that found growth.

A name is the one a user would look the object up by, whoever else refers to it (``_canonical_objects``): the module
that defines it rather than one that imported it, a module by its own name rather than an alias, a meta-path finder
by ``sys.meta_path`` rather than by the ``__loader__`` of a module it loaded (import-system attributes name
nothing), then the shortest name. The import system's and pytest's caches are marked (``Holder.note``) and come
after the code's holders, which come by growth; the order is the same from one test to the next.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType, FunctionType, ModuleType
from typing import Any

from pytest_memtrack.hunt.caches import LRU_CACHE_TYPE
from pytest_memtrack.hunt.registries import registry_roots, registry_sizes
from pytest_memtrack.tracking.attribution import HARNESS_PACKAGES, is_harness


@dataclass(frozen=True)
class Holder:
    name: str       # "pkg.module.REGISTRY", "pkg.module.Class.instances", "<logging.Logger>.handlers"
    kind: str       # the holder's type, e.g. "dict"
    objects: int    # new objects found beneath it
    note: str = ""  # what it is when it is not the code's: "import system cache", "pytest's assertion rewriter cache"

    def to_dict(self) -> dict[str, Any]:
        found = {"holder": self.name, "type": self.kind, "objects": self.objects}
        return {**found, "note": self.note} if self.note else found


#: Module attributes the import system sets: what they refer to (a loader, a spec, the builtins) is shared by many
#: modules and is named where it lives (``sys.meta_path``, ``builtins``), never as ``some_module.__loader__``.
_IMPORT_ATTRIBUTES = frozenset({"__loader__", "__spec__", "__builtins__", "__cached__", "__file__", "__package__",
                                "__name__", "__path__", "__doc__"})
#: Where the import system keeps its state and caches: attributes of ``sys``, and modules.
_IMPORT_SYSTEM_NAMES = ("sys.modules", "sys.path_importer_cache", "sys.meta_path", "sys.path_hooks", "sys.path")
_IMPORT_SYSTEM_MODULES = frozenset({"zipimport", "importlib", "_frozen_importlib", "_frozen_importlib_external",
                                    "pkgutil"})
_REWRITER = "<_pytest.assertion.rewrite.AssertionRewritingHook>"
_FINDER = "sys.meta_path[<"


def _note(name: str) -> str:
    """What a holder is when it is not the code's own: the import system's or pytest's cache, or linecache's."""
    if _REWRITER in name:
        return "pytest's assertion rewriter cache"
    if name.startswith(_FINDER) and is_harness(name[len(_FINDER):]):
        return "pytest's cache"
    if name.partition(".")[0] in _IMPORT_SYSTEM_MODULES or any(
            name == base or name.startswith((base + ".", base + "[")) for base in _IMPORT_SYSTEM_NAMES):
        return "import system cache"
    if name.startswith("linecache."):
        return "source line cache (linecache)"
    return ""


def _ordered(holders: Iterable[Holder]) -> list[Holder]:
    """The code's holders first, most objects first; then the caches the import system and pytest keep, by name:
    the same order from one test to the next, whatever each grew by."""
    return sorted(holders, key=lambda holder: (1, 0, holder.name) if holder.note
                  else (0, -holder.objects, holder.name))


def _type_name(obj: object) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _global_names() -> tuple[dict[int, str], dict[int, str]]:
    """(id of a module's namespace -> module name, id of an object kept by name -> its dotted name)."""
    namespaces = {id(module.__dict__): name for name, module in _tracked_modules()}
    values = {key: ".".join(name) for key, (name, _, _) in _canonical_objects().items()}
    return namespaces, values


def _describe(holder: object, reached: set[int], namespaces: dict[int, str], values: dict[int, str],
              owners: dict[int, object]) -> str:
    if id(holder) in values:
        return values[id(holder)]
    if id(holder) in namespaces and isinstance(holder, dict):
        keys = sorted(key for key, value in list(holder.items())
                      if id(value) in reached and isinstance(key, str) and key not in _IMPORT_ATTRIBUTES)
        return f"{namespaces[id(holder)]}.{keys[0]}" if keys else namespaces[id(holder)]
    owner = owners.get(id(holder))
    if owner is not None:  # an instance attribute: name the instance's type and the attribute
        keys = [key for key, value in list(_instance_dict(owner).items()) if value is holder]
        if keys:
            return f"{values.get(id(owner), f'<{_type_name(owner)}>')}.{keys[0]}"
    return ""  # not reachable by a name: left out


_SIZED = (list, dict, set, deque, str, bytes, bytearray)
#: Module state that belongs to the test runner or to the hunt itself, not to the code under test.
_RUNNER_PACKAGES = HARNESS_PACKAGES | {"tracemalloc"}


_WEAK = "weak references"


def _holds_weak_references(value: object) -> bool:
    """A list or set of weak references (``WeakSet.data``, ``logging._handlerList``) keeps nothing alive."""
    if isinstance(value, (list, set)) and value:
        try:
            sample = value[-1] if isinstance(value, list) else next(iter(value))
        except Exception:
            return False
        return isinstance(sample, weakref.ReferenceType)
    return False


def _instance_dict(obj: object) -> dict[str, Any]:
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


def _tracked_modules() -> list[tuple[str, ModuleType]]:
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
    for module_name, module in _tracked_modules():
        try:
            yield from _module_objects(module_name, module, module.__dict__)
        except RuntimeError:  # dictionary changed size during iteration
            continue
    yield from _finder_objects()


def _defined_in(home: object, module: ModuleType) -> bool:
    """Whether ``home`` (a ``__module__``) names ``module``, under whichever of its names."""
    return isinstance(home, str) and sys.modules.get(home) is module


def _module_objects(module_name: str, module: ModuleType,
                    namespace: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], object, int]]:
    sized, lru, plain = _SIZED, LRU_CACHE_TYPE, (ModuleType, FunctionType, type)
    for key, value in namespace.items():
        if key in _IMPORT_ATTRIBUTES:
            continue
        if isinstance(value, sized):
            yield (module_name, key), value, _REFERRED
            if type(value) is dict and len(value) <= _NESTED_ITEMS:
                yield from _nested(module_name, key, value)
            continue
        if type(value) is FunctionType:
            yield from _mutable_defaults(module_name, key, value, module)
            continue
        if type(value) is lru:
            home = _instance_dict(value).get("__module__")
            yield (module_name, key), value, _DEFINED if _defined_in(home, module) else _REFERRED
            continue
        if isinstance(value, type):
            try:
                members = type.__getattribute__(value, "__dict__")
                qualname = value.__qualname__
            except Exception:
                continue
            if _defined_in(members.get("__module__"), module):
                for attribute, member in members.items():
                    if isinstance(member, sized) or type(member) is lru:
                        yield (module_name, qualname, attribute), member, _DEFINED
        elif not isinstance(value, plain) and type(value).__dictoffset__:  # its instances have a __dict__
            rank = _DEFINED if _defined_in(type(value).__module__, module) else _REFERRED
            yield (module_name, key), value, rank
            for attribute, member in _instance_dict(value).items():
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
    sized, lru = _SIZED, LRU_CACHE_TYPE
    for finder in list(sys.meta_path):
        if isinstance(finder, (type, ModuleType)):
            continue  # a class: named by its module
        label = f"meta_path[<{_type_name(finder)}>]"
        for attribute, member in _instance_dict(finder).items():
            if isinstance(member, sized) or type(member) is lru:
                yield ("sys", label, attribute), member, _IMPORT_ROOT


def _name_length(name: tuple[str, ...]) -> int:
    return sum(part.count(".") + 1 for part in name)


def _canonical_objects() -> dict[int, tuple[tuple[str, ...], object, int]]:
    """id of each object ``_named_objects`` names -> (its canonical name, the object, how canonical): the most
    canonical name, then the shortest, then the first in sorted order. Deciding only between the names of an
    object kept under several, it allocates nothing more for the others."""
    chosen: dict[int, tuple[tuple[str, ...], object, int]] = {}
    for name, value, rank in _named_objects():
        known = chosen.get(id(value))
        if known is None or (rank, _name_length(name), name) < (known[2], _name_length(known[0]), known[0]):
            chosen[id(value)] = (name, value, rank)
    return chosen


def named_sizes(containers: dict[tuple[str, ...], object] | None = None) -> dict[tuple[str, ...], tuple[int, str]]:
    """The size of every container, string and memoization cache kept by name (see ``_named_objects``):
    ``len()``, or an ``lru_cache``'s ``currsize``; keyed by the name's parts, joined only for a report. Compared
    before and after a hunt's runs, the ones that grew every run are where the leaked objects are kept, whether or
    not the garbage collector tracks those objects (strings, bytes). ``containers``, when given, receives each
    sized object by its name, for ``runs_to_fill`` to measure again without a walk."""
    sizes: dict[tuple[str, ...], tuple[int, str]] = {}
    for name, value, _ in _canonical_objects().values():
        if isinstance(value, _SIZED):
            sizes[name] = (len(value), _WEAK if _holds_weak_references(value) else type(value).__name__)
            if containers is not None:
                containers[name] = value
        elif type(value) is LRU_CACHE_TYPE:
            currsize = _lru_currsize(value)
            if currsize is not None:
                sizes[name] = (currsize, "lru_cache")
    sizes.update(registry_sizes())
    return sizes


def _maxlen(value: object) -> int | None:
    return value.maxlen if isinstance(value, deque) else None


def runs_to_fill(before: dict[tuple[str, ...], tuple[int, str]], runs: int,
                 containers: dict[tuple[str, ...], object]) -> int | None:
    """When every named container that grew over the last ``runs`` runs (since ``before``) is bounded by its own
    ``maxlen`` and not yet full: the runs it takes the slowest of them to fill at the pace it grew. None when one
    that grew has no bound (or nothing named grew): more runs would show no plateau. ``containers``: the objects
    ``before`` measured (``named_sizes``), measured again here: a walk of every module's state under tracing costs
    a hunt ~0.25 s."""
    needed = None
    for name, value in containers.items():
        known = before.get(name)
        if known is None or not isinstance(value, _SIZED):
            continue
        growth = len(value) - known[0]
        if growth <= 0:
            continue
        maxlen = _maxlen(value)
        if maxlen is None:
            return None
        pace = growth / max(1, runs)
        needed = max(needed or 0, int(-(-(maxlen - len(value)) // pace)) if pace else 0)
    for name, (size, _) in registry_sizes().items():
        if size > before.get(name, (size, ""))[0]:
            return None
    return needed


#: ``Holder.note`` of a ``deque`` at its ``maxlen``: what the runs put in it evicted as much as it added.
FULL_BOUNDED = "bounded deque at its maxlen"


def grown_holders(before: dict[tuple[str, ...], tuple[int, str]], after: dict[tuple[str, ...], tuple[int, str]],
                  runs: int, top: int = 5) -> list[Holder]:
    """Named containers that grew by at least one item (or character) per run between two ``named_sizes``; the
    holder's ``objects`` is its growth over the runs."""
    grown = [Holder(".".join(name), after[name][1], after[name][0] - size, _note(".".join(name)))
             for name, (size, _) in before.items()
             if name in after and after[name][0] - size >= runs and after[name][1] != _WEAK]
    return _ordered(grown)[:top]


def _attribute_owners(containers: Sequence[object]) -> dict[int, object]:
    """id of each of ``containers`` that is an instance's attribute -> that instance (a scan of the heap over the
    containers, and one more over the dicts among their referrers).

    What refers to an attribute's value depends on where the instance keeps its attributes: the instance itself when
    CPython keeps them inline (3.11+, until something reads its ``__dict__``; 3.13 even after), else its
    ``__dict__``, a dict of its own (always on 3.10, and on 3.11 and 3.12 once the ``__dict__`` was read), which only
    the instance refers to: the owner is then one level further up."""
    ids = {id(container) for container in containers}
    owners: dict[int, object] = {}
    dicts: dict[int, dict[Any, Any]] = {}  # referrers that may be an instance's __dict__
    for referrer in gc.get_referrers(*containers):
        if isinstance(referrer, (type, ModuleType, FrameType)):
            continue
        if type(referrer) is dict:
            dicts[id(referrer)] = referrer
            continue
        for value in list(_instance_dict(referrer).values()):
            if id(value) in ids:
                owners.setdefault(id(value), referrer)
    if dicts:
        for referrer in gc.get_referrers(*dicts.values()):
            if isinstance(referrer, (type, ModuleType, FrameType)):
                continue
            attributes = _instance_dict(referrer)
            if id(attributes) in dicts:
                for value in list(attributes.values()):
                    if id(value) in ids:
                        owners.setdefault(id(value), referrer)
    return owners


def find_holders(new_objects: list[object], excluded: Iterable[object] = (), max_depth: int = 4,
                 top: int = 5, min_objects: int = 1) -> list[Holder]:
    """The pre-existing objects that the surviving ``new_objects`` hang from, most objects first.

    ``new_objects`` are the gc-tracked objects created since the baseline and still alive (under ``gc.freeze()``:
    ``gc.get_objects()`` before unfreezing); call with the heap unfrozen, so that ``gc.get_referrers`` sees the
    old objects. ``excluded`` are objects of the caller's own that refer to them (its lists, its frames).
    """
    new_ids = set(map(id, new_objects))
    skip = {id(obj) for obj in excluded} | {id(new_objects)}
    reached: set[int] = set()
    anchors: dict[int, object] = {}
    counts: Counter[int] = Counter()
    frontier = list(new_objects)
    roots = registry_roots()
    rooted: Counter[str] = Counter()  # new objects the interpreter keeps outside any module (a signal handler)
    for _ in range(max_depth):
        if not frontier:
            break
        for obj in frontier:
            if id(obj) in roots:
                rooted[roots[id(obj)]] += 1
        reached.update(map(id, frontier))
        next_frontier: list[object] = []
        frontier_ids = set(map(id, frontier))
        referrers = gc.get_referrers(*frontier)
        skip.add(id(referrers))
        skip.add(id(frontier))
        for referrer in referrers:
            rid = id(referrer)
            if rid in skip or isinstance(referrer, FrameType) or rid in frontier_ids:
                continue
            if type(referrer) is tuple and len(referrer) == len(frontier) \
                    and all(a is b for a, b in zip(referrer[:3], frontier[:3])):
                continue  # the argument tuple of the gc.get_referrers call itself
            if rid in new_ids:
                if rid not in reached:
                    next_frontier.append(referrer)
                    reached.add(rid)
                continue
            anchors[rid] = referrer
            counts[rid] += sum(1 for referent in gc.get_referents(referrer) if id(referent) in frontier_ids)
        frontier = next_frontier
    if not anchors and not rooted:
        return []
    namespaces, values = _global_names()
    plain = [anchor for anchor in anchors.values() if isinstance(anchor, (list, set, dict)) and id(anchor) not in values
             and id(anchor) not in namespaces]
    owners = _attribute_owners(plain) if plain else {}
    holders: Counter[tuple[str, str]] = Counter()
    full: set[str] = set()
    for rid, anchor in anchors.items():
        if not isinstance(anchor, (list, dict, set, deque)) or counts[rid] < min_objects \
                or _holds_weak_references(anchor):
            continue  # an object's own attributes change all the time; a container that gained items is a holder
        name = _describe(anchor, reached, namespaces, values, owners)
        if name and name.partition(".")[0].lstrip("<") not in _RUNNER_PACKAGES:
            holders[(name, _type_name(anchor))] += counts[rid]
            if _maxlen(anchor) is not None and len(anchor) == _maxlen(anchor):
                full.add(name)
    for name, count in rooted.items():
        holders[(name, "interpreter state")] += count
    return _ordered(Holder(name, kind, count, FULL_BOUNDED if name in full else _note(name))
                    for (name, kind), count in holders.items())[:top]
