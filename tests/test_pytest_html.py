"""With pytest-html installed, its results table gets a "Leak score" and a "Memory" column, read from the test
entries the JSON report is built from; without it (or without --memtrack) nothing of ours touches it."""

from __future__ import annotations

import html
import json
import re

import pytest

from pytest_memtrack.report.formatting import format_score
from pytest_memtrack.report.verdict import memory_figure

pytest.importorskip("pytest_html", reason="pytest-html is in the test extra")

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")
TESTS = """
import pytest

KEPT = []


@pytest.mark.max_leak_score(0.1)
def test_leaks():
    KEPT.append(bytearray(100_000))


def test_plain():
    assert True
"""


def results_table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """pytest-html 4's page: the header cells (rendered) and each test's row cells (in its JSON data blob)."""
    header = re.search(r'<tr class="table-results__header">(.*?)</tr>', page, re.S) or re.search(
        r"<thead[^>]*>(.*?)</thead>", page, re.S)
    assert header is not None, "no results table header in the page"
    headers = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
               for cell in re.findall(r"<th\b.*?</th>", header.group(1), re.S)]
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None, "no data blob in the page"
    data = json.loads(html.unescape(blob.group(1)))
    rows = {nodeid: [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in entries[0]["resultsTableRow"]]
            for nodeid, entries in data["tests"].items()}
    return headers, rows


@pytest.mark.slow
def test_the_results_table_shows_each_tests_leak_score_and_memory_from_our_one_model(pytester):
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest("--memtrack", "--html=report.html", "--memtrack-json=report.json", *NO_PLUGINS)
    result.assert_outcomes(failed=1, passed=1)
    headers, rows = results_table((pytester.path / "report.html").read_text())
    assert headers[:5] == ["Result", "Test", "Duration", "Leak score", "Memory"], headers
    report = json.loads((pytester.path / "report.json").read_text())
    tests = {test["nodeid"]: test for test in report["tests"]}
    leaking, plain = tests["test_app.py::test_leaks"], tests["test_app.py::test_plain"]
    assert rows["test_app.py::test_leaks"][3:5] == [format_score(leaking["leak_score"]), memory_figure(leaking)]
    assert rows["test_app.py::test_plain"][3:5] == ["—", memory_figure(plain)]
    assert re.fullmatch(r"0\.\d\d", rows["test_app.py::test_leaks"][3]) and leaking["leak_score"] > 0.1
    assert rows["test_app.py::test_leaks"][4].endswith("KiB per run")  # ~97.7 KiB a run: the bytearray it keeps
    assert rows["test_app.py::test_plain"][4].startswith("RSS ")


def test_without_memtrack_pytest_htmls_table_is_its_own(pytester):
    pytester.makepyfile(test_app=TESTS)
    pytester.runpytest("--html=report.html", *NO_PLUGINS)
    headers, rows = results_table((pytester.path / "report.html").read_text())
    assert "Leak score" not in headers and "Memory" not in headers
    assert len(rows["test_app.py::test_plain"]) == len(headers)


@pytest.mark.slow
@pytest.mark.parametrize("with_html", [True, False], ids=["pytest-html", "no:html"])
def test_the_columns_module_is_imported_only_with_pytest_html(pytester, with_html):
    pytester.makepyfile("import sys\n\n"
                        "def test_modules():\n"
                        f"    assert ('pytest_memtrack.report.html_columns' in sys.modules) is {with_html}\n")
    result = pytester.runpytest_subprocess("--memtrack", *([] if with_html else ["-p", "no:html"]), *NO_PLUGINS)
    result.assert_outcomes(passed=1)
