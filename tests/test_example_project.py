"""The example project (example_project/) run the way its README command runs it, in a copy, in a subprocess.

One session of ``pytest --memtrack --memtrack-json=... --memtrack-html=...`` is shared by the tests of this module,
and by xdist's workers (it takes several seconds); each test checks one thing a user relies on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from once import once_per_session

from pytest_memtrack.schemas import validate

EXAMPLE = Path(__file__).resolve().parents[1] / "example_project"
LEAKING = "tests/test_service.py::test_stock_report_can_be_downloaded_again"
WARM = "tests/test_service.py::test_quotes_use_a_warm_price_cache"
COMMAND = ["--memtrack", "--memtrack-json=reports/memtrack.json", "--memtrack-html=reports/memtrack.html"]

pytestmark = pytest.mark.slow  # every test runs the example project in a subprocess


def leak_line() -> int:
    """The line of service.py marked ``# LEAK`` (the culprit the failure message must name)."""
    lines = (EXAMPLE / "inventory_app" / "service.py").read_text().splitlines()
    marked = [number for number, text in enumerate(lines, 1) if "# LEAK" in text]
    assert len(marked) == 1, "example_project/inventory_app/service.py must mark exactly one line '# LEAK'"
    return marked[0]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEMTRACK_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "80"  # the terminal width pytest (and so the plugin) fits its lines to, whatever runs the suite
    return env


def run(directory: Path, *args: str) -> pytest.RunResult:
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=directory, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    return pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(),
                            time.time() - started)


def copy_of_the_example(parent: Path) -> Path:
    directory = parent / "example_project"
    shutil.copytree(EXAMPLE, directory,
                    ignore=shutil.ignore_patterns("reports", ".memtrack", ".pytest_cache", "__pycache__"))
    return directory


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of_the_example(tmp_path_factory.mktemp("copy"))


def run_the_readme_command(parent: Path) -> dict:
    directory = copy_of_the_example(parent)
    result = run(directory, *COMMAND)
    return {"ret": int(result.ret), "outlines": result.outlines, "errlines": result.errlines,
            "duration": result.duration, "reports": str(directory / "reports")}


@pytest.fixture(scope="module")
def readme_command(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The README command, run once per session (shared by xdist's workers) in a copy of its own: its output and
    where it wrote its reports."""
    return once_per_session(tmp_path_factory, "example_project", run_the_readme_command)


@pytest.fixture(scope="module")
def memtrack_run(readme_command: dict) -> pytest.RunResult:
    return pytest.RunResult(readme_command["ret"], readme_command["outlines"], readme_command["errlines"],
                            readme_command["duration"])


@pytest.fixture(scope="module")
def reports(readme_command: dict) -> Path:
    return Path(readme_command["reports"])


@pytest.fixture(scope="module")
def report(memtrack_run: pytest.RunResult, reports: Path) -> dict:
    path = reports / "memtrack.json"
    assert path.is_file(), "\n".join(memtrack_run.outlines + memtrack_run.errlines)
    return json.loads(path.read_text())


def test_the_readme_command_exits_1_because_exactly_the_leaking_test_fails(memtrack_run: pytest.RunResult):
    assert memtrack_run.ret == 1, "\n".join(memtrack_run.outlines + memtrack_run.errlines)
    memtrack_run.assert_outcomes(passed=7, failed=1)
    memtrack_run.stdout.fnmatch_lines([f"FAILED {LEAKING} - *"])


def test_the_leak_failure_names_the_culprit_line_in_service_py(memtrack_run: pytest.RunResult):
    memtrack_run.stdout.fnmatch_lines([
        f"memtrack: inventory_app/service.py:{leak_line()} leaks * KiB a run",  # 80 columns: the score below
        "    (score 0.* > limit 0.1)",
        "  runs: * (* warm-up, * measured*, 1 reported)*",  # 1 traced warm-up and ", N screening" after a screen
        "  LEAK Python memory (tracemalloc): * per run (score *)",
        "  top allocation sites (growth per run):",
        f"    inventory_app/service.py:{leak_line()}: * KiB in * blocks",
    ])
    memtrack_run.stdout.fnmatch_lines([
        f"LEAK {LEAKING}",
        f"  inventory_app/service.py:{leak_line()} leaks * KiB a run (score 0.* > limit 0.1)",
        "  reproduce: pytest \\",
        f"      {LEAKING} \\",
        "      --memtrack --memtrack-max-leak-score=0.1",
        "1 leaking test (2 hunted), * packages, *",
        "memtrack: JSON report: reports/memtrack.json",
    ])


def test_no_line_of_the_failure_or_the_memtrack_section_exceeds_the_terminal(memtrack_run: pytest.RunResult):
    lines = memtrack_run.outlines
    ours = lines[lines.index(next(x for x in lines if " FAILURES " in x)):]
    ours = ours[:ours.index(next(x for x in ours if " short test summary info " in x))]
    assert any(x.startswith("LEAK ") for x in ours) and any(x.startswith("memtrack: inventory_app/service.py:") for x in ours)
    assert [x for x in ours if len(x) > 80] == []


def test_the_warm_cache_test_is_hunted_and_passes(report: dict):
    tests = {test["nodeid"]: test for test in report["tests"]}
    warm = tests[WARM]
    assert warm["outcome"] == "passed"
    assert warm["hunt"] is not None and warm["leak_score"] <= warm["limit"] == 0.1
    assert not warm["leaking"]


def test_the_json_report_records_the_leak_with_its_evidence(report: dict):
    leaking = {test["nodeid"]: test for test in report["tests"]}[LEAKING]
    assert leaking["outcome"] == "failed" and leaking["leaking"] and leaking["leak_score"] > 0.1
    assert leaking["hunt"]["kinds"]["memory"]["leaking"]
    top_site = leaking["hunt"]["evidence"]["allocation_sites"][0]
    assert (top_site["file"], top_site["line"]) == ("inventory_app/service.py", leak_line())
    assert f"inventory_app/service.py:{leak_line()}" in leaking["message"]
    ordinary = [t for t in report["tests"] if t["nodeid"] not in (LEAKING, WARM)]
    assert len(ordinary) == 6 and all(t["outcome"] == "passed" and t["hunt"] is None for t in ordinary)


def test_the_lazily_loaded_packages_appear_in_the_report(report: dict):
    packages = report["packages"]
    for name in ("json", "csv", "decimal", "sqlite3", "jinja2"):
        assert packages[name]["is_loaded"], name
    assert "xml.etree.ElementTree" in packages


def test_the_json_report_validates_against_its_schema(report: dict):
    validate("report", report)


def test_the_html_report_is_written_and_shows_the_leaking_test(memtrack_run: pytest.RunResult, reports: Path):
    html = (reports / "memtrack.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert LEAKING in html
    memtrack_run.stdout.fnmatch_lines(["memtrack: JSON report: *memtrack.json", "memtrack: HTML report: *memtrack.html"])


def test_without_memtrack_the_example_suite_passes(project: Path):
    result = run(project, "-p", "no:cacheprovider")
    assert result.ret == 0, "\n".join(result.outlines + result.errlines)
    result.assert_outcomes(passed=8)


def test_the_demo_prints_the_spec_summary_and_flags_the_leaking_package(project: Path):
    done = subprocess.run([sys.executable, "-m", "inventory_app", "200"], cwd=project, env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Total current memory: \d+\.\dMB", lines[0])
    assert re.fullmatch(r"System memory pressure: (low|medium|high|critical)", lines[1])
    assert any(re.fullmatch(r"Package inventory_app has leak score: 0\.\d\d", line) for line in lines), done.stdout
    assert any(line.startswith("jinja2 (loaded): current ") for line in lines), done.stdout
