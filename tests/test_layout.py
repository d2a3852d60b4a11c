"""The house's layout holds: no import cycles (lazy imports included), no oversized module, a light entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_memtrack"
#: A module past this many lines holds more than one job (pytest's best plugins stay under ~550).
MAX_MODULE_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports anywhere (module level, functions, TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules) | {"pytest_memtrack._reach", "pytest_memtrack._heap"}  # C leaves: they import nothing of ours
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    # Importing a submodule imports its parents' __init__ first; a package __init__ importing its own submodules
    # is not a cycle we can create by layout, so parents are not edges here.
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_plugin_imports_itself_back_even_lazily():
    graph = _graph()
    assert "pytest_memtrack.hunt.runner" in graph and graph["pytest_memtrack.hunt.runner"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_module_is_over_the_size_of_one_job():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_feature_package_is_a_package():
    for folder in ("tracking", "hunt", "report", "server", "history", "schemas"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("argv", [["-p", "no:cacheprovider", "--co", "-q", "--version"]])
def test_importing_the_entry_point_loads_no_feature_and_no_heavy_library(tmp_path, argv):
    """``pytest`` without ``--memtrack`` pays for our option declarations only."""
    code = (
        "import sys, pytest_memtrack.plugin as p\n"
        "import pytest\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pytest_memtrack'))\n"
        "heavy = sorted(m for m in ('jinja2', 'sqlite3', 'http.server', 'psutil', 'tracemalloc') if m in sys.modules)\n"
        "print(loaded); print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    loaded, heavy = (eval(line) for line in out.stdout.splitlines())
    assert set(loaded) <= {"pytest_memtrack", "pytest_memtrack.plugin", "pytest_memtrack.hooks",
                           "pytest_memtrack.options", "pytest_memtrack.settings", "pytest_memtrack.units"}, loaded
    assert heavy == [], heavy


def test_a_run_without_memtrack_imports_no_feature_module(pytester):
    pytester.makepyfile("import sys\n"
                        "def test_light():\n"
                        "    loaded = [m for m in sys.modules if m.startswith('pytest_memtrack.')]\n"
                        "    assert set(loaded) <= {'pytest_memtrack.plugin', 'pytest_memtrack.hooks',\n"
                        "        'pytest_memtrack.options', 'pytest_memtrack.settings', 'pytest_memtrack.units'}, loaded\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
