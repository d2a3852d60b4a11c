"""The module-state reading: both walkers (C extension and pure Python) against an independent one-object-at-a-time
reference, on hand-written edge cases and on random object graphs with sharing and cycles."""

from __future__ import annotations

import gc
import subprocess
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_memtrack.tracking import attribution
from pytest_memtrack.tracking.attribution import PyWalker, measure_packages

try:
    from pytest_memtrack._reach import Walker as CWalker
except ImportError:  # pragma: no cover - only where the extension could not be built
    CWalker = None

WALKERS = [pytest.param(PyWalker, id="python"),
           pytest.param(CWalker, id="c", marks=pytest.mark.skipif(CWalker is None, reason="C walker not built"))]

PACKAGE = "memtrack_fake_pkg"


def keep_own(obj: object) -> bool:
    return getattr(obj, "__module__", None) == PACKAGE


def safe_getsizeof(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:
        return type(obj).__basicsize__


def is_boundary(obj: object) -> bool:
    return isinstance(obj, (type, types.BuiltinFunctionType)) or type(obj) in (types.FunctionType, types.MethodType)


def reference_bytes(roots, keep, already=()) -> int:
    """What the walkers must report, computed the slow, obvious way."""
    seen = {id(obj) for obj in already}
    total = 0
    stack = list(roots)
    held = list(roots)  # keeps every visited object alive so that ids stay unique
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType) or (is_boundary(obj) and not keep(obj)):
            continue
        total += safe_getsizeof(obj)
        referents = gc.get_referents(obj)
        held.extend(referents)
        stack.extend(referents)
    return total


class Foreign:
    """A class of another package: never counted, never entered."""
    payload = ["x" * 100_000]


def make_own_class():
    own = type("Own", (), {"__module__": PACKAGE, "registry": [bytes(500)]})
    return own


@pytest.mark.parametrize("walker_type", WALKERS)
def test_simple_state_matches_getsizeof_sum(walker_type):
    text = "y" * 300
    inner = [text, 10**30]
    state = [inner, (inner, 2.5), {text}]
    expected = sum(map(sys.getsizeof, [state, inner, text, 10**30, state[1], 2.5, state[2]]))
    assert walker_type().walk([state], keep_own) == expected


@pytest.mark.parametrize("walker_type", WALKERS)
def test_dict_keys_count_only_where_gc_reports_them(walker_type):
    """A dict whose keys are all strings does not report them to gc (CPython's dict_traverse), so neither walker
    counts such keys; the dict's own size, which grows with its entries, is counted."""
    value = ["v" * 100]
    state = {"key": value}
    assert walker_type().walk([state], keep_own) == sys.getsizeof(state) + sys.getsizeof(value) + \
        sys.getsizeof(value[0])


@pytest.mark.parametrize("walker_type", WALKERS)
def test_boundaries_modules_foreign_classes_and_own_classes(walker_type):
    own = make_own_class()

    namespace: dict = {"__name__": PACKAGE}
    exec("def own_function():\n    return 1", namespace)
    own_function = namespace["own_function"]
    state = {"module": types, "foreign": Foreign, "foreign_instance": Foreign(), "own": own,
             "own_instance": own(), "function": own_function, "builtin": len}
    got = walker_type().walk([state], keep_own)
    assert got == reference_bytes([state], keep_own)
    # Foreign's 100,000-character payload is behind a boundary; the own class's 500-byte registry is not.
    assert got > sys.getsizeof(bytes(500))
    assert got < sys.getsizeof(Foreign.payload[0])


@pytest.mark.parametrize("walker_type", WALKERS)
def test_each_object_counted_once_across_walks(walker_type):
    shared = ["s" * 2000]
    first, second = [shared], [shared]
    walker = walker_type()
    a = walker.walk([first], keep_own)
    b = walker.walk([second], keep_own)
    assert a == reference_bytes([first], keep_own)
    assert b == sys.getsizeof(second)  # the shared list was counted by the first walk
    assert walker.walk([first, second], keep_own) == 0


@pytest.mark.parametrize("walker_type", WALKERS)
def test_marked_objects_are_neither_counted_nor_entered(walker_type):
    hidden = ["h" * 5000]
    state = [hidden]
    walker = walker_type()
    walker.mark([hidden])
    assert walker.walk([state], keep_own) == sys.getsizeof(state)


@pytest.mark.parametrize("walker_type", WALKERS)
def test_cycles_terminate_and_count_once(walker_type):
    a: list = []
    b = [a]
    a.append(b)
    a.append(a)
    assert walker_type().walk([a], keep_own) == sys.getsizeof(a) + sys.getsizeof(b)


class BrokenSize:
    def __sizeof__(self):
        raise RuntimeError("no size")


class BigSize:
    def __sizeof__(self):
        return 10**6


class NegativeSize:
    def __sizeof__(self):
        return -5


@pytest.mark.parametrize("walker_type", WALKERS)
def test_custom_and_broken_sizeof(walker_type):
    state = [BrokenSize(), BigSize(), BigSize(), NegativeSize(), BrokenSize()]
    got = walker_type().walk([state], keep_own)
    assert got == reference_bytes([state], keep_own)
    assert got > 2 * 10**6


@pytest.mark.parametrize("walker_type", WALKERS)
def test_keep_errors_propagate_and_the_walker_stays_usable(walker_type):
    own = make_own_class()

    def exploding_keep(obj):
        raise ValueError("keep failed")

    walker = walker_type()
    with pytest.raises(ValueError, match="keep failed"):
        walker.walk([[own, [1, 2, 3]]], exploding_keep)
    state = {"k": "v" * 100}
    assert walker.walk([state], keep_own) == reference_bytes([state], keep_own)


@pytest.mark.skipif(CWalker is None, reason="C walker not built")
def test_c_walker_argument_errors():
    with pytest.raises(TypeError):
        CWalker(1)
    with pytest.raises(TypeError, match="keep must be a package name or a callable"):
        CWalker().walk([[]], None)
    with pytest.raises(TypeError):
        CWalker().walk(5, keep_own)
    with pytest.raises(TypeError):
        CWalker().mark(5)


@st.composite
def object_graphs(draw):
    """A random graph: containers (lists, dicts, instances) wired to each other and to shared leaves, with cycles."""
    own = make_own_class()
    leaves = [draw(st.text(max_size=40)), draw(st.integers(-10**40, 10**40)), draw(st.binary(max_size=64)),
              draw(st.floats(allow_nan=False)), Foreign, own, own(), len, types]
    count = draw(st.integers(1, 25))
    kinds = draw(st.lists(st.sampled_from(["list", "dict", "instance"]), min_size=count, max_size=count))
    containers: list = [[] if kind == "list" else {} if kind == "dict" else own() for kind in kinds]
    nodes = containers + leaves
    for container in containers:
        picks = draw(st.lists(st.integers(0, len(nodes) - 1), max_size=6))
        children = [nodes[i] for i in picks]
        if isinstance(container, list):
            container.extend(children)
        elif isinstance(container, dict):
            container.update((f"k{i}", child) for i, child in enumerate(children))
        else:
            container.children = tuple(children)
    roots = [nodes[i] for i in draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=3))]
    return roots, nodes


@settings(max_examples=60, deadline=None)
@given(object_graphs())
def test_walkers_agree_with_the_reference_on_random_graphs(graph):
    roots, _nodes = graph
    expected = reference_bytes(roots, keep_own)
    for walker_type in [PyWalker] + ([CWalker] if CWalker is not None else []):
        assert walker_type().walk(roots, keep_own) == expected
        assert walker_type().walk(roots, PACKAGE) == expected  # a package name: the same rule, checked in C


class ModuleAttributeRaises(type):
    @property
    def __module__(cls):
        raise RuntimeError("no module for you")


class WithoutModule(type):
    @property
    def __module__(cls):
        raise AttributeError("__module__")


@pytest.mark.parametrize("walker_type", WALKERS)
def test_a_package_name_keeps_its_submodules_and_survives_unreadable_module_names(walker_type):
    submodule_class = type("Sub", (), {"__module__": PACKAGE + ".sub", "data": [bytes(300)]})
    lookalike_class = type("Look", (), {"__module__": PACKAGE + "_other", "data": [bytes(300)]})
    nameless = WithoutModule("Nameless", (), {})
    unreadable = ModuleAttributeRaises("Bad", (), {})
    state = [submodule_class, lookalike_class, nameless, unreadable]
    assert walker_type().walk([state], PACKAGE) == reference_bytes([state], keep_own_or_submodule)


def keep_own_or_submodule(obj: object) -> bool:
    try:
        owner = obj.__module__
    except Exception:
        return False
    return isinstance(owner, str) and (owner == PACKAGE or owner.startswith(PACKAGE + "."))


def test_measure_packages_walks_a_real_module(monkeypatch):
    module = types.ModuleType(PACKAGE)
    module.STATE = [str(i) * 50 for i in range(200)]
    monkeypatch.setitem(sys.modules, PACKAGE, module)
    got = measure_packages([PACKAGE])[PACKAGE]
    assert got == reference_bytes([module.__dict__], keep_own, already=[module])
    assert got >= sum(map(sys.getsizeof, module.STATE))


@pytest.mark.slow
def test_the_pure_python_walker_can_be_forced():
    code = "from pytest_memtrack.tracking import attribution; print(attribution.WALKER_IMPLEMENTATION)"
    forced = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**__import__("os").environ, "PYTEST_MEMTRACK_NO_C": "1"})
    assert forced.stdout.strip() == "python"
    c_expected = CWalker is not None and not __import__("os").environ.get("PYTEST_MEMTRACK_NO_C")
    assert attribution.WALKER_IMPLEMENTATION == ("c" if c_expected else "python")
