"""pytest entry point: options, markers and wiring. The stateful work lives in ``session.MemtrackSession``."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from pytest_memtrack import hooks
from pytest_memtrack.options import add_feature_options

if TYPE_CHECKING:
    from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.settings import resolve_settings

#: Feature modules: each offers ``configure(config)`` (their options are declared in ``options``, so they are
#: imported only when tracking is on); ``configure`` runs only
#: when ``--memtrack`` is on, validates the feature's settings (``pytest.UsageError``) and registers its hooks.
FEATURE_MODULES = (
    "pytest_memtrack.report.plugin",
    "pytest_memtrack.server.plugin",
    "pytest_memtrack.history.plugin",
)

#: The loader created before conftests load, handed to the session in pytest_configure.
EARLY_LOADER = pytest.StashKey["LazyLoader"]()
PREVIOUS_LOADER = pytest.StashKey["LazyLoader | None"]()

MAX_LEAK_SCORE_HELP = "fail a test whose leak score (0..1) exceeds this limit; applies to tests without their own max_leak_score marker"

CORE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    # (name, kind, help); kind "bool" is a flag on the command line and a bool ini value.
    ("memtrack", "bool", "track memory per package and per test, hunt leaks, write reports"),
    ("memtrack_json", "string", "write the JSON report to this path"),
    ("memtrack_max_leak_score", "string", MAX_LEAK_SCORE_HELP),
    ("memtrack_leak_threshold", "string", "leak score from which a package counts as leaking in the report (default 0.1)"),
    ("memtrack_max_runs", "string", "most executions of a hunted test's call phase, warm-ups included (default 10)"),
    ("memtrack_warmup_runs", "string", "executions of a hunted test discarded before measuring (default 2)"),
    ("memtrack_history_size", "string", "measurements kept per package (default 100)"),
    ("memtrack_check_interval", "string", "seconds between per-package memory passes (default: adaptive, within the overhead budget)"),
    ("memtrack_overhead_budget", "string", "share of wall time the per-package passes may use, e.g. 0.02 or 2%% (default 2%%)"),
    ("memtrack_leak_reference", "string", "growth per run that scores a test's leak magnitude 1.0, e.g. 64KB (default 64KB)"),
    ("memtrack_native_floor", "string", "native growth per run, unexplained by traced memory, that counts as a native leak (default 16KB with glibc's malloc reading, 256KB with RSS)"),
    ("memtrack_hunt_budget", "string", "seconds of wall time the repeats of one hunted test may take; when they run "
                                       "out the verdict uses the runs done so far, and says so (default 60, 0: no limit)"),
    ("memtrack_trace_all", "bool", "keep tracemalloc on for the whole session (precise, slower)"),
    ("memtrack_measure_all", "bool", "also track the standard library and the test tooling (pytest, its plugins) "
                                     "package by package (slower passes)"),
)


def _features() -> list[ModuleType]:
    return [importlib.import_module(name) for name in FEATURE_MODULES]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memtrack", "memory-leak tracking (pytest-memtrack)")
    for name, kind, help_text in CORE_OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=name, help=help_text)
            parser.addini(name, help_text, type="bool", default=None)
        else:
            group.addoption(flag, action="store", default=None, dest=name, metavar=name.split("_")[-1].upper(),
                            help=help_text)
            parser.addini(name, help_text.replace("%%", "%"), default=None)
    add_feature_options(group, parser)


def _early_flag(early_config: pytest.Config, name: str) -> bool:
    """A boolean setting before ``pytest_configure``: the parsed command line, else the ini file."""
    value = getattr(early_config.known_args_namespace, name, None)
    if value is None:
        try:
            value = bool(early_config.getini(name))
        except (ValueError, KeyError):
            value = False
    return bool(value)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Start observing imports before conftest files and test modules import their packages."""
    if _early_flag(early_config, "memtrack"):
        from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader

        # Installed as the process's loader now, so application code imported by conftest files
        # (``loader = get_lazy_loader()`` at module level) shares the session's loader.
        loader = LazyLoader(track_all=_early_flag(early_config, "memtrack_measure_all"))
        loader.observe_imports(ignore_present=True)
        early_config.stash[EARLY_LOADER] = loader
        early_config.stash[PREVIOUS_LOADER] = reset_lazy_loader(loader)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "max_leak_score(limit): repeat this test to measure leaks and fail it when its leak score exceeds limit (0..1).",
    )
    config.addinivalue_line("markers", "memtrack_skip: never hunt leaks in this test.")
    settings = resolve_settings(config)
    if not settings.enabled:
        return
    from pytest_memtrack.session import MemtrackSession

    features = _features()  # an import error here is a bug to see, not a feature to skip
    session = MemtrackSession(config, settings, config.stash.get(EARLY_LOADER, None))
    if PREVIOUS_LOADER in config.stash:
        session.previous_loader = config.stash[PREVIOUS_LOADER]
    config.pluginmanager.register(session, "memtrack-session")
    for module in features:
        module.configure(config)
