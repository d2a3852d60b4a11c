"""What keeps a leak alive: the pre-existing object (a module global, a class attribute, a registry) that the
objects a hunt's runs created and left behind hang from.

Allocation sites say where leaked memory was made; the holder says why it was not freed, which is what one has to
change. The search goes up from the surviving new objects through ``gc.get_referrers`` (one heap scan per level,
a few levels) until it reaches objects that existed before the hunt, then names those: ``module.global``,
``module.Class.attribute``, or ``<type>.attribute`` of an instance. Run only for a hunt that found growth.

Holders are named as ``names`` names what modules keep. The import system's and pytest's caches are marked
(``Holder.note``) and come after the code's holders, which come by growth; the order is the same from one test to
the next.
"""

from __future__ import annotations

import gc
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

from pytest_memtrack.hunt.names import (
    IMPORT_ATTRIBUTES,
    RUNNER_PACKAGES,
    SIZED,
    WEAK,
    canonical_objects,
    holds_weak_references,
    instance_dict,
    tracked_modules,
    type_name,
)
from pytest_memtrack.hunt.registries import registry_roots, registry_sizes
from pytest_memtrack.tracking.attribution import is_harness


@dataclass(frozen=True)
class Holder:
    name: str       # "pkg.module.REGISTRY", "pkg.module.Class.instances", "<logging.Logger>.handlers"
    kind: str       # the holder's type, e.g. "dict"
    objects: int    # new objects found beneath it
    note: str = ""  # what it is when it is not the code's: "import system cache", "pytest's assertion rewriter cache"

    def to_dict(self) -> dict[str, Any]:
        found = {"holder": self.name, "type": self.kind, "objects": self.objects}
        return {**found, "note": self.note} if self.note else found


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


def _global_names() -> tuple[dict[int, str], dict[int, str]]:
    """(id of a module's namespace -> module name, id of an object kept by name -> its dotted name)."""
    namespaces = {id(module.__dict__): name for name, module in tracked_modules()}
    values = {key: ".".join(name) for key, (name, _, _) in canonical_objects().items()}
    return namespaces, values


def _describe(holder: object, reached: set[int], namespaces: dict[int, str], values: dict[int, str],
              owners: dict[int, object]) -> str:
    if id(holder) in values:
        return values[id(holder)]
    if id(holder) in namespaces and isinstance(holder, dict):
        keys = sorted(key for key, value in list(holder.items())
                      if id(value) in reached and isinstance(key, str) and key not in IMPORT_ATTRIBUTES)
        return f"{namespaces[id(holder)]}.{keys[0]}" if keys else namespaces[id(holder)]
    owner = owners.get(id(holder))
    if owner is not None:  # an instance attribute: name the instance's type and the attribute
        keys = [key for key, value in list(instance_dict(owner).items()) if value is holder]
        if keys:
            return f"{values.get(id(owner), f'<{type_name(owner)}>')}.{keys[0]}"
    return ""  # not reachable by a name: left out


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
        if known is None or not isinstance(value, SIZED):
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
             if name in after and after[name][0] - size >= runs and after[name][1] != WEAK]
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
        for value in list(instance_dict(referrer).values()):
            if id(value) in ids:
                owners.setdefault(id(value), referrer)
    if dicts:
        for referrer in gc.get_referrers(*dicts.values()):
            if isinstance(referrer, (type, ModuleType, FrameType)):
                continue
            attributes = instance_dict(referrer)
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
                or holds_weak_references(anchor):
            continue  # an object's own attributes change all the time; a container that gained items is a holder
        name = _describe(anchor, reached, namespaces, values, owners)
        if name and name.partition(".")[0].lstrip("<") not in RUNNER_PACKAGES:
            holders[(name, type_name(anchor))] += counts[rid]
            if _maxlen(anchor) is not None and len(anchor) == _maxlen(anchor):
                full.add(name)
    for name, count in rooted.items():
        holders[(name, "interpreter state")] += count
    return _ordered(Holder(name, kind, count, FULL_BOUNDED if name in full else _note(name))
                    for (name, kind), count in holders.items())[:top]
