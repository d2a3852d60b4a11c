"""Which top-level packages are tracked: never the harness, optionally the standard library and the test tooling,
always the project under test, whatever the plugin itself depends on.

Testing jinja2 with a plugin that uses jinja2 must still track jinja2. The project's packages are found without
importing anything: the distribution named by the rootdir's ``pyproject.toml`` or ``setup.cfg`` (its installed
top-level names, editable or not), and the packages in the rootdir itself or in its ``src/`` folder. Folders of
the test suite (``tests``, ``testing``, ...) are the suite's state, never the project's.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata

from pytest_memtrack.tracking.attribution import HARNESS_PACKAGES

#: Not tracked: interpreter state (``sys.modules`` grows with every import), the tracker and the test runner
#: (pytest keeps per-test bookkeeping in module state until the session ends).
NOT_TRACKED = frozenset({"sys", "builtins", "__main__"}) | HARNESS_PACKAGES
#: Observed only with ``track_all``: the standard library and the test tooling. Walking their module state is
#: most of a pass's cost (boltons: 112 of 125 ms) and a user rarely owns a leak there; packages the user
#: registers with ``lazy()``/``register()`` are always tracked.
TOOLING = HARNESS_PACKAGES | frozenset({"psutil", "jinja2", "markupsafe",
                     "iniconfig", "packaging", "py", "_distutils_hack", "setuptools", "pkg_resources", "pip",
                     "hypothesis", "schemathesis", "sortedcontainers", "attr", "attrs", "exceptiongroup", "tomli"})
OPTIONAL_TRACKING = frozenset(sys.stdlib_module_names) | TOOLING

#: Folder names that hold a suite's tests, fixtures and resources, or the project's tooling, not its code.
NOT_PROJECT_FOLDERS = frozenset({"tests", "test", "testing", "docs", "doc", "examples", "example", "benchmarks",
                                 "bench", "scripts", "tools", "build", "dist"})


def _distribution_name(rootdir: str) -> str | None:
    pyproject = os.path.join(rootdir, "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        text = ""
    # The [project] table's name, read without a TOML parser (tomllib is 3.11+): the first name = "..." line in it.
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if table:
        found = re.search(r"^name\s*=\s*[\"']([^\"']+)[\"']", table.group(1), re.M)
        if found:
            return found.group(1)
    setup_cfg = os.path.join(rootdir, "setup.cfg")
    if not os.path.isfile(setup_cfg):
        return None
    import configparser  # (only for a setup.cfg: ~2 ms of a start-up otherwise)

    parser = configparser.ConfigParser()
    try:
        parser.read(setup_cfg, encoding="utf-8")
        return parser.get("metadata", "name", fallback=None)
    except (configparser.Error, UnicodeDecodeError):
        return None


def _installed_top_levels(distribution: str) -> set[str]:
    """The top-level names an installed distribution provides (one distribution's metadata is read, not all)."""
    try:
        dist = metadata.distribution(distribution)
        listed = dist.read_text("top_level.txt")
        if listed:
            return {line.strip() for line in listed.splitlines() if line.strip().isidentifier()}
        tops = set()
        for path in dist.files or ():
            first = path.parts[0] if path.parts else ""
            name = first[:-3] if first.endswith(".py") else first
            if name.isidentifier() and (len(path.parts) > 1 or first.endswith(".py")):
                tops.add(name)
        return tops
    except Exception:  # not installed, or broken metadata: the folders found are the answer
        return set()


def _packages_in(folder: str) -> set[str]:
    try:
        entries = os.listdir(folder)
    except OSError:
        return set()
    return {name for name in entries
            if name.isidentifier() and name not in NOT_PROJECT_FOLDERS and not name.startswith(("_", "."))
            and os.path.isfile(os.path.join(folder, name, "__init__.py"))}


def project_packages(rootdir: str) -> frozenset[str]:
    """Top-level import names of the project at ``rootdir``."""
    found = _packages_in(rootdir) | _packages_in(os.path.join(rootdir, "src"))
    distribution = _distribution_name(rootdir)
    if distribution:
        found |= _installed_top_levels(distribution)
        guess = re.sub(r"[-.]", "_", distribution).lower()
        if os.path.isdir(os.path.join(rootdir, guess)) or os.path.isdir(os.path.join(rootdir, "src", guess)):
            found.add(guess)
    return frozenset(name for name in found if name not in NOT_PROJECT_FOLDERS)
