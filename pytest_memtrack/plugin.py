"""pytest entry point: options, markers and wiring. The stateful work lives in ``session.MemtrackSession``."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from pytest_memtrack import hooks
from pytest_memtrack.options import add_options
from pytest_memtrack.settings import read_ini, resolve_settings

if TYPE_CHECKING:
    from pytest_memtrack.tracking.loader import LazyLoader  # noqa: F401  (named in the stash keys below)

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

def _features() -> list[ModuleType]:
    return [importlib.import_module(name) for name in FEATURE_MODULES]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _early_flag(early_config: pytest.Config, name: str) -> bool:
    """A boolean setting before ``pytest_configure``: the parsed command line, else the ini file."""
    value = getattr(early_config.known_args_namespace, name, None)
    if value is None:
        value = read_ini(early_config, name)  # a bad value is a usage error naming the key
    return bool(value)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Start observing imports before conftest files and test modules import their packages."""
    if _early_flag(early_config, "memtrack"):
        from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader

        # Installed as the process's loader now, so application code imported by conftest files
        # (``loader = get_lazy_loader()`` at module level) shares the session's loader.
        from pytest_memtrack.tracking.project import project_packages

        loader = LazyLoader(track_all=_early_flag(early_config, "memtrack_measure_all"))
        loader.project = project_packages(str(early_config.rootpath))
        loader.observe_imports(ignore_present=True)
        early_config.stash[EARLY_LOADER] = loader
        early_config.stash[PREVIOUS_LOADER] = reset_lazy_loader(loader)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "max_leak_score(limit): repeat this test to measure leaks and fail it when its leak score exceeds "
        "limit (0..1).",
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
