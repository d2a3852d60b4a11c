"""The wheel users install: built from the source tree, installed (not editable) into a fresh virtualenv, and run
on the example project. An editable install hides a subpackage or template left out of the package list; this
does not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from pytest_memtrack.schemas import validate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_project"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "MEMTRACK_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "pytest-memtrack"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "reports", ".memtrack", "*.so"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("pytest_memtrack-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "env"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    return home


def test_the_wheel_carries_every_module_and_data_file_of_the_source_tree(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "pytest_memtrack"
    expected = {path.relative_to(ROOT).as_posix() for path in package.rglob("*")
                if path.is_file() and path.suffix in (".py", ".json", ".jinja", ".j2", ".js")}
    assert expected - names == set()


def test_the_installed_wheel_runs_the_example_project_and_renders_its_report(installed: Path, tmp_path: Path):
    project = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", ".memtrack", "__pycache__"))
    python = str(installed / "bin" / "python")
    done = subprocess.run([python, "-m", "pytest", "--memtrack", "--memtrack-json=reports/memtrack.json",
                           "--memtrack-html=reports/memtrack.html", "-p", "no:cacheprovider"],
                          cwd=project, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # the example's one leaking test, on purpose
    assert "1 failed" in done.stdout and "memtrack: inventory_app/service.py:" in done.stdout
    report = json.loads((project / "reports" / "memtrack.json").read_text())
    validate("report", report)
    assert (project / "reports" / "memtrack.html").read_text().startswith("<!DOCTYPE html>")
    cli = subprocess.run([str(installed / "bin" / "pytest-memtrack"), "html", "reports/memtrack.json", "-o",
                          "again.html"], cwd=project, capture_output=True, text=True, env=_env(), timeout=60)
    assert cli.returncode == 0, cli.stderr
    where = subprocess.run([python, "-c", "import pytest_memtrack.plugin as p; print(p.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=60)
    assert str(installed) in where.stdout  # the wheel's copy ran, not the source tree
