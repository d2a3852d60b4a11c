"""The holder search (retention.find_holders, grown_holders) on its own: what keeps new objects alive, named
by what owns it, the way a user would look it up."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_memtrack.hunt.names import named_sizes
from pytest_memtrack.hunt.retention import Holder, _note, find_holders, grown_holders


class Leaked:
    pass


class Keeper:
    def __init__(self) -> None:
        self.kept: list[Leaked] = []


@pytest.mark.parametrize("dict_read", [False, True], ids=["attributes-untouched", "__dict__-read"])
def test_an_instance_attribute_is_named_wherever_the_instance_keeps_its_attributes(dict_read: bool) -> None:
    # The list's referrer is the instance itself while CPython keeps its attributes inline (3.11+), or the
    # instance's own __dict__ (always on 3.10; on 3.11 and 3.12 once anything read __dict__): named either way.
    keepers = [Keeper()]  # reachable by no module-level name: only "<type>.attribute" can name it
    if dict_read:
        vars(keepers[0])
    new = [Leaked() for _ in range(3)]
    keepers[0].kept.extend(new)
    holders = find_holders(new, excluded=(new,))
    assert [(h.name, h.kind, h.objects) for h in holders] == [(f"<{__name__}.Keeper>.kept", "list", 3)]


def test_a_dict_that_is_no_instances_attributes_names_no_instance() -> None:
    # A plain dict holding the list is not an instance's __dict__: nothing to name it by, so no holder.
    unnamed = [{"kept": []}]
    new = [Leaked() for _ in range(3)]
    unnamed[0]["kept"].extend(new)
    assert find_holders(new, excluded=(new,)) == []


# ------------------------------------------------------------------ names: by the owner, canonical, marked, ordered

@pytest.fixture
def modules() -> Iterator[Callable[[str, str], types.ModuleType]]:
    """Makes modules from source and puts them in sys.modules, in the order made; takes them out afterwards."""
    made: list[str] = []

    def make(name: str, source: str = "") -> types.ModuleType:
        module = types.ModuleType(name)
        exec(source, module.__dict__)
        sys.modules[name] = module
        made.append(name)
        return module

    yield make
    for name in made:
        sys.modules.pop(name, None)


def grown(change: Callable[[], object], runs: int = 3) -> list[tuple[str, str, str]]:
    before = named_sizes()
    change()
    return [(h.name, h.kind, h.note) for h in grown_holders(before, named_sizes(), runs)]


HUB = """
class Hub:
    def __init__(self):
        self.items = []

HUB = Hub()
"""


def test_a_shared_object_is_named_by_the_module_that_defines_it_not_by_one_that_reaches_it(modules) -> None:
    # The misnaming seen on jinja2's suite ("anyio._lazyimport.__loader__._marked_for_rewrite_cache"): a module that
    # comes first in sys.modules reaches another module's object through an import-system attribute and a global.
    user = modules("aaa_user")
    owner = modules("zzz_owner", HUB)
    user.__loader__ = owner.HUB
    user.hub = owner.HUB
    assert grown(lambda: owner.HUB.items.extend(range(3))) == [("zzz_owner.HUB.items", "list", "")]
    new = [Leaked() for _ in range(3)]
    owner.HUB.items.extend(new)
    assert [h.name for h in find_holders(new, excluded=(new,))] == ["zzz_owner.HUB.items"]


def test_a_module_known_under_two_names_is_named_by_its_own(modules) -> None:
    owner = modules("zzz_real", "CACHE = {}")
    sys.modules["aaa_alias"] = owner
    try:
        assert grown(lambda: owner.CACHE.update(dict.fromkeys(range(3)))) == [("zzz_real.CACHE", "dict", "")]
    finally:
        del sys.modules["aaa_alias"]


class CachingFinder:
    """A meta-path finder with a cache of its own, the way pytest's assertion rewriter has."""

    def __init__(self) -> None:
        self.cache: dict[str, bool] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        return None


def test_a_finder_reached_only_through_modules_loader_is_named_by_sys_meta_path(modules) -> None:
    finder = CachingFinder()
    modules("aaa_loaded").__loader__ = finder
    sys.meta_path.append(finder)
    try:
        holders = grown(lambda: finder.cache.update(dict.fromkeys("abc", True)))
    finally:
        sys.meta_path.remove(finder)
    assert holders == [(f"sys.meta_path[<{__name__}.CachingFinder>].cache", "dict", "import system cache")]


def _rewriter() -> Any:
    from _pytest.assertion.rewrite import AssertionRewritingHook

    hook = next((finder for finder in sys.meta_path if isinstance(finder, AssertionRewritingHook)), None)
    if hook is None:
        pytest.skip("assertion rewriting is off")
    return hook


def test_pytest_s_and_the_import_system_s_caches_are_marked_and_come_after_the_code_s_in_a_stable_order(
        modules) -> None:
    hook = _rewriter()
    code = modules("aaa_app", "REGISTRY = []")
    names: list[str] = []

    def grow(caches: int) -> None:  # the code's registry grows least: it is named first all the same
        code.REGISTRY.extend(range(3))
        for i in range(caches):
            names.append(f"memtrack-fake-rewriter-{caches}-{i}")
            hook._marked_for_rewrite_cache[names[-1]] = False
        for i in range(12 - caches):
            names.append(f"memtrack-fake-path-{caches}-{i}")
            sys.path_importer_cache[names[-1]] = None

    try:
        orders = [grown(lambda caches=caches: grow(caches)) for caches in (4, 8)]
    finally:
        for name in names:
            hook._marked_for_rewrite_cache.pop(name, None)
            sys.path_importer_cache.pop(name, None)
    rewriter = "sys.meta_path[<_pytest.assertion.rewrite.AssertionRewritingHook>]._marked_for_rewrite_cache"
    assert orders[0] == orders[1] == [("aaa_app.REGISTRY", "list", ""),
                                      (rewriter, "dict", "pytest's assertion rewriter cache"),
                                      ("sys.path_importer_cache", "dict", "import system cache")]


def test_the_message_marks_a_cache_of_the_import_system() -> None:
    holder = Holder("sys.path_importer_cache", "dict", 3, "import system cache")
    assert holder.to_dict() == {"holder": "sys.path_importer_cache", "type": "dict", "objects": 3,
                                "note": "import system cache"}
    assert Holder("app.CACHE", "dict", 3).to_dict() == {"holder": "app.CACHE", "type": "dict", "objects": 3}


@pytest.mark.parametrize("name, note", [
    ("sys.path_importer_cache", "import system cache"),
    ("sys.modules", "import system cache"),
    ("sys.meta_path[<pkg.hooks.Finder>].cache", "import system cache"),
    ("sys.meta_path[<_pytest.assertion.rewrite.AssertionRewritingHook>]._marked_for_rewrite_cache",
     "pytest's assertion rewriter cache"),
    ("sys.meta_path[<pytest_cov.Hook>].seen", "pytest's cache"),
    ("zipimport._zip_directory_cache", "import system cache"),
    ("importlib.metadata._cache", "import system cache"),
    ("linecache.cache", "source line cache (linecache)"),
    ("sys.pathological", ""),
    ("app.sys_path_cache", ""),
    ("importlib_metadata_clone.CACHE", ""),
])
def test_what_is_marked_as_the_import_system_s_or_pytest_s(name: str, note: str) -> None:
    assert _note(name) == note


def test_the_failure_message_marks_the_caches_that_are_not_the_code_s() -> None:
    from pytest_memtrack.hunt.message import describe
    from pytest_memtrack.hunt.verdict import KINDS, HuntResult, KindVerdict

    holders = [Holder("app.CACHE", "dict", 3), Holder("sys.path_importer_cache", "dict", 3, "import system cache")]
    kinds = {kind: KindVerdict(kind == "memory", 0.5 if kind == "memory" else 0.0, 100.0) for kind in KINDS}
    result = HuntResult(10, 2, [], kinds, evidence={"holders": [holder.to_dict() for holder in holders]})
    assert "  kept alive by: app.CACHE (dict), sys.path_importer_cache (dict, import system cache)" in describe(
        result, 0.1).splitlines()


def test_sizes_measured_again_without_a_walk_are_the_walks() -> None:
    """``sizes_again`` measures the names the first walk measured through the objects it kept, and follows a module
    global, or a class's attribute, rebound to another container since: the sizes a second walk would give."""
    from pytest_memtrack.hunt.names import sizes_again

    module = types.ModuleType("memtrack_sizes_again_probe")
    sys.modules[module.__name__] = module
    try:
        exec(
            "import functools\n"
            "GROWS = []\n"
            "REBOUND = []\n"
            "class Registry:\n"
            "    entries = {}\n"
            "@functools.lru_cache(maxsize=64)\n"
            "def square(x):\n"
            "    return x * x\n", module.__dict__)
        containers: dict[tuple[str, ...], object] = {}
        before = named_sizes(containers)
        module.GROWS.extend([1, 2, 3])
        module.REBOUND = module.REBOUND + ["a", "b"]  # a new list under the same name
        module.Registry.entries = {"x": 1}
        module.square(3)
        module.NEW = [1]  # not measured before: nothing says it grew
        again = sizes_again(before, containers)
        walked = named_sizes()
        for name in ("GROWS", "REBOUND", "square"):
            key = (module.__name__, name)
            assert again[key] == walked[key] != before[key], key
        key = (module.__name__, "Registry", "entries")
        assert again[key] == walked[key] == (1, "dict") and before[key] == (0, "dict")
        assert (module.__name__, "NEW") not in again and (module.__name__, "NEW") in walked
    finally:
        del sys.modules[module.__name__]
