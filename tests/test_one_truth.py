"""One truth on every surface: the package view agrees with the hunts, and no page says more than was checked."""

from __future__ import annotations

import json

import pytest

from pytest_memtrack.schemas import validate
from pytest_memtrack.tracking.analysis import memory_trend
from pytest_memtrack.tracking.loader import LazyLoader
from pytest_memtrack.tracking.monitor import PASS_NOISE_BYTES

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")

# A project package that keeps 50 KiB per call in a module-level list, and a test that calls it.
CACHE_PACKAGE = {
    "shop/__init__.py": "",
    "shop/cache.py": "KEPT = []\n\ndef remember(n):\n    KEPT.append(bytearray(n))\n    return len(KEPT)\n",
}
LEAKING_TEST = """
import pytest
from shop import cache

@pytest.mark.max_leak_score(0.1)
def test_remembers():
    cache.remember(50 * 1024)

def test_plain():
    assert True
"""


def write_tree(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    write_tree(pytester, CACHE_PACKAGE)
    pytester.makepyfile(test_shop=LEAKING_TEST)
    pytester.syspathinsert()
    return pytester


def test_a_hunted_leak_inside_a_package_makes_that_package_leaking_on_every_surface(shop):
    result = shop.runpytest("--memtrack", "--memtrack-json=report.json", *NO_PLUGINS)
    result.assert_outcomes(failed=1, passed=1)
    report = json.loads((shop.path / "report.json").read_text())
    validate("report", report)
    nodeid = "test_shop.py::test_remembers"
    leaks = {leak["package_name"]: leak for leak in report["leaks"]["leaks"]}
    assert "shop" in leaks and leaks["shop"]["tests"] == [nodeid]
    assert leaks["shop"]["leak_score"] >= report["leaks"]["threshold"]
    assert "shop" in [p["package_name"] for p in report["summary"]["packages_with_leaks"]]
    assert report["packages"]["shop"]["leak_tests"] == [nodeid]
    assert any(s["type"] == "memory_leak" and s["package_name"] == "shop"
               for s in report["suggestions"]["suggestions"])


def test_the_same_run_under_xdist_charges_the_package_in_the_merged_report(shop):
    result = shop.runpytest("--memtrack", "--memtrack-json=report.json", "-n", "2", *NO_PLUGINS)
    result.assert_outcomes(failed=1, passed=1)
    report = json.loads((shop.path / "report.json").read_text())
    assert [leak["package_name"] for leak in report["leaks"]["leaks"]] == ["shop"]
    assert report["leaks"]["leaks"][0]["tests"] == ["test_shop.py::test_remembers"]


def test_a_charge_is_the_packages_share_of_the_tests_growth():
    loader = LazyLoader()
    loader.register("shop")
    loader.register("other")
    charged = loader.charge_hunt("t::x", [{"package": "shop.cache", "bytes_per_run": 3000.0},
                                          {"package": "other", "bytes_per_run": 1000.0},
                                          {"package": "json.decoder", "bytes_per_run": 0.0},
                                          {"package": "uuid", "bytes_per_run": 4000.0}], 0.8)
    assert charged == ["shop", "other"]  # uuid is not tracked; it keeps its share of the growth
    assert loader.get_package_info("shop").memory_metrics.memory_leak_score == pytest.approx(0.3)
    assert loader.get_package_info("other").memory_metrics.memory_leak_score == pytest.approx(0.1)
    leaks = loader.get_memory_leaks_report(0.1)["leaks"]
    assert [(leak["package_name"], leak["tests"]) for leak in leaks] == [("shop", ["t::x"]), ("other", ["t::x"])]


def test_steps_within_the_pass_noise_floor_read_stable_and_score_zero_alike():
    history = [(float(t), 1_000_000.0 + 175.0 * t) for t in range(12)]  # +175 B a pass: no package keeps that
    loader = LazyLoader()
    loader.monitor.noise_bytes = PASS_NOISE_BYTES
    info = loader.register("json")
    for t, value in history:
        loader.record_readings({"json": value}, timestamp=t + 1)
    metrics = info.memory_metrics
    assert (metrics.memory_trend, metrics.memory_leak_score) == ("stable", 0.0)
    assert not [s for s in loader.get_memory_optimization_suggestions() if s["package_name"] == "json"]
    assert memory_trend(history) == "increasing"  # the library default has no floor


# -- no page says more than was checked -----------------------------------------------------------------------------

def unhunted_report():
    from samples import passing_test, sample_report

    report = sample_report()
    report["tests"] = [passing_test("t.py::test_a"), passing_test("t.py::test_b")]
    report["comparison"] = None
    return report


def test_a_run_that_hunted_nothing_says_not_checked_on_every_surface():
    from html.parser import HTMLParser

    from pytest_memtrack.report import github
    from pytest_memtrack.report.html import render_html
    from pytest_memtrack.report.terminal import summary_lines

    report = unhunted_report()
    page = render_html(report)
    assert "Not checked for leaks: none of the 2 tests was hunted" in page and "No leaks found" not in page
    assert 'class="verdict neutral"' in page and "--memtrack-max-leak-score=0.1" in page
    HTMLParser().feed(page)
    summary = github.render_summary(report)
    assert summary.startswith("### ⚪ pytest-memtrack: Not checked for leaks") and "✅" not in summary
    lines = summary_lines(report, verbose=0)
    assert lines[-1].startswith("not checked for leaks (no test hunted)") and "max_leak_score" in lines[-2]


def test_a_session_that_hunts_nothing_says_so_in_the_terminal(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest("--memtrack", *NO_PLUGINS)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*not checked for leaks (no test hunted)*"])
    assert "no leaking tests" not in result.stdout.str()


def test_reproduce_carries_the_limit_wherever_it_came_from(pytester):
    pytester.makepyfile("KEPT = []\n\ndef test_leaks():\n    KEPT.append(bytearray(100_000))\n")
    pytester.makeini("[pytest]\nmemtrack_max_leak_score = 0.2\n")
    result = pytester.runpytest("--memtrack", *NO_PLUGINS)
    result.assert_outcomes(failed=1)
    command = "pytest test_reproduce_carries_the_limit_wherever_it_came_from.py::test_leaks --memtrack " \
              "--memtrack-max-leak-score=0.2"
    printed = result.stdout.lines[result.stdout.lines.index("  reproduce: pytest \\"):]
    printed = printed[:next(i for i, line in enumerate(printed) if not line.endswith("\\")) + 1]
    assert " ".join(line.removesuffix("\\").strip() for line in printed) == f"reproduce: {command}"
    assert all(len(line) <= 80 for line in printed)
    # And it does reproduce: run without the ini file, the printed command hunts and fails the test again.
    (pytester.path / "tox.ini").unlink()  # pytester.makeini writes tox.ini
    again = pytester.runpytest(*command.split()[1:], *NO_PLUGINS)
    again.assert_outcomes(failed=1)


def test_advice_and_the_headline_amount_follow_the_kind_that_scored_highest():
    from pytest_memtrack.report.verdict import advice, lead_kind, per_run_text

    test = {"leak_score": 1.0, "limit": 0.1, "nodeid": "t.py::test_thread", "hunt": {
        "kinds": {"memory": {"leaking": True, "score": 0.2, "per_run": 4096.0},
                  "native": {"leaking": False, "score": 0.0, "per_run": -213_000.0},
                  "fds": {"leaking": False, "score": 0.0, "per_run": 0.0},
                  "threads": {"leaking": True, "score": 1.0, "per_run": 1.0}},
        "evidence": {"allocation_sites": [{"file": "/usr/lib/python3.11/threading.py", "line": 265,
                                           "bytes_per_run": 4096.0, "count_per_run": 3}],
                     "new_threads": ["worker (poll)"], "new_fds": [], "object_types": [], "packages": []}}}
    assert lead_kind(test) == "threads"
    assert per_run_text("threads", 1.0) == "1 thread per run"
    assert per_run_text("native", -213_000.0) == "no growth"
    assert advice(test).startswith("Each run leaves worker (poll) running")
    test["hunt"]["kinds"]["threads"].update(leaking=False, score=0.0)
    test["hunt"]["evidence"]["allocation_sites"].append({"file": "shop/cache.py", "line": 4, "bytes_per_run": 3000.0})
    assert advice(test).startswith("Start at shop/cache.py:4")  # the project's own frame, not threading.py
    test["hunt"]["kinds"]["memory"].update(leaking=False, score=0.0)
    test["hunt"]["kinds"]["native"].update(leaking=True, score=0.5, per_run=300_000.0)
    assert "malloc's bytes in use grow" in advice(test, "malloc") and "RSS" in advice(test, "rss")


# -- the project under test is tracked, whatever the plugin depends on --------------------------------------------

def test_the_projects_own_packages_are_found_from_its_metadata_and_folders(tmp_path):
    from pytest_memtrack.tracking.project import project_packages

    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = []\n\n[project]\nname = "Jinja2"\n')
    (tmp_path / "src" / "jinja2").mkdir(parents=True)
    (tmp_path / "src" / "jinja2" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "helpers").mkdir()  # no __init__.py: a folder, not a package
    assert project_packages(str(tmp_path)) == {"jinja2"}
    assert "pytest" in project_packages_of_installed("pytest")


def project_packages_of_installed(name: str) -> frozenset[str]:
    from pytest_memtrack.tracking.project import _installed_top_levels

    return frozenset(_installed_top_levels(name))


@pytest.mark.slow
def test_testing_a_package_the_plugin_depends_on_still_tracks_it_and_says_what_was_left_out(pytester):
    """jinja2 is our dependency and tooling elsewhere; in jinja2's own suite it is the project."""
    pytester.makefile(".toml", pyproject='[project]\nname = "markupsafe"\n')
    pytester.makepyfile(test_uses="import markupsafe, json\n\ndef test_escape():\n"
                                  "    assert markupsafe.escape('<') == '&lt;'\n")
    # A fresh process: in-process, what earlier tests imported is the outer session's, not this run's.
    result = pytester.runpytest_subprocess("--memtrack", "--memtrack-json=report.json", "-v", *NO_PLUGINS)
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    assert "markupsafe" in report["packages"]
    assert "markupsafe" not in report["run"]["untracked_packages"]
    result.stdout.fnmatch_lines(["Not tracked: *"])
    assert "--memtrack-measure-all tracks them too." in " ".join(result.stdout.str().split())  # wrapped to 80


def test_packages_in_the_suites_own_folders_are_the_suites_state_not_the_projects(pytester):
    """jinja2's tests import resource packages from tests/res (and a t_pack from a zip there): not the project."""
    pytester.makefile(".toml", pyproject='[project]\nname = "shop"\n')
    write_tree(pytester, {**CACHE_PACKAGE, "tests/res/__init__.py": "DATA = list(range(100))\n",
                       "tests/test_res.py": "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n"
                                            "import res\nfrom shop import cache\n\n"
                                            "def test_res():\n    assert res.DATA and cache.remember(1)\n\n"
                                            "def test_late():\n    import helpers_late\n"
                                            "    assert helpers_late.X\n",
                       "tests/helpers_late/__init__.py": "X = 1\n"})
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--memtrack", "--memtrack-json=report.json", *NO_PLUGINS)
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "report.json").read_text())
    assert "shop" in report["packages"]
    assert "res" not in report["packages"] and "helpers_late" not in report["packages"]
    assert {"res", "helpers_late"} <= set(report["run"]["untracked_packages"])


def test_a_package_that_holds_its_own_tests_is_still_the_project(pytester):
    """Tests inside the package's own folder (mypkg/test_x.py) make that folder a suite folder: the package itself
    stays tracked, while a helper module in a tests folder (tests/helpers.py) is the suite's."""
    write_tree(pytester, {"mypkg/__init__.py": "KEPT = [1]\n",
                       "mypkg/test_inside.py": "import mypkg\n\ndef test_inside():\n    assert mypkg.KEPT\n",
                       "tests/helpers.py": "VALUE = 2\n",
                       "tests/test_outside.py": "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n"
                                                "import helpers\n\ndef test_outside():\n    assert helpers.VALUE\n"})
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--memtrack", "--memtrack-json=report.json", *NO_PLUGINS)
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "report.json").read_text())
    assert "mypkg" in report["packages"]
    assert "helpers" not in report["packages"]
