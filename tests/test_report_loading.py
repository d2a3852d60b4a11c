"""The one loader of saved reports (``report.loading``): what ``html``, ``serve`` and ``compare`` read is checked
once, so a malformed file is one sentence naming the field, never a 500 from the server or a traceback."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from samples import empty_report, sample_report

from pytest_memtrack import cli
from pytest_memtrack.errors import ReportError
from pytest_memtrack.report.loading import check_report, load_report
from pytest_memtrack.server.app import App
from pytest_memtrack.server.sources import ReportSource


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting ``report[a][b]...`` (dotted path; list indexes as digits) to ``value``."""
    def mutate(report: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = report
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(report: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = report
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]
    return mutate


#: (mutation, the clause of the sentence that names what is wrong)
MALFORMED = [
    (_set("summary", {}), "summary.total_current_memory is missing"),
    (_set("packages.app", None), "packages.app is null, not an object"),
    (_drop("packages.app.memory_metrics"), "packages.app.memory_metrics is missing"),
    (_set("packages.app.memory_metrics", [1]), "packages.app.memory_metrics is a list, not an object"),
    (_set("packages.app.memory_metrics.current_memory_usage", "2 MB"),
     "packages.app.memory_metrics.current_memory_usage is a string, not a finite number or null"),
    (_set("packages.app.memory_metrics.memory_leak_score", True),
     "packages.app.memory_metrics.memory_leak_score is true, not a finite number or null"),
    (_set("summary.packages_with_leaks.0.leak_score", "high"),
     "summary.packages_with_leaks[0].leak_score is a string, not a finite number"),
    (_set("summary.memory_trends", {"stable": 3}), "summary.memory_trends.increasing is missing"),
    (_set("summary.total_packages", -1), "summary.total_packages is a number, not a whole number of at least 0"),
    (_set("leaks.detection_time", "now"), "leaks.detection_time is a string, not a finite number or null"),
    (_set("suggestions.suggestions", None), "suggestions.suggestions is null, not a list"),
    (_set("tests", [1]), "tests[0] is a number, not an object"),
    (_drop("tests.1.nodeid"), "tests[1].nodeid is missing"),
    (_set("tests.0.hunt.kinds.memory", 3), "tests[0].hunt.kinds.memory is a number, not an object"),
    (_set("package_histories.app", [[1]]), "package_histories.app[0] is not a [timestamp, bytes] pair of finite "
                                           "numbers"),
    (_set("comparison", []), "comparison is a list, not an object or null"),
]

#: Numbers Python's json module reads although JSON has no such thing; the server then answered 500.
NOT_FINITE = [("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("NaN", "NaN"), ("1e400", "1e400")]


def _write(tmp_path: Path, report: dict[str, Any], name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def _with_score(tmp_path: Path, literal: str) -> Path:
    text = json.dumps(sample_report()).replace('"memory_leak_score": 0.62', f'"memory_leak_score": {literal}', 1)
    assert literal in text
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    return path


def _commands(path: Path, good: Path, tmp_path: Path) -> list[list[str]]:
    return [["html", str(path), "-o", str(tmp_path / "page.html")], ["serve", str(path), "--port", "0"],
            ["compare", str(good), str(path)], ["compare", str(path), str(good)]]


@pytest.mark.parametrize(("mutate", "clause"), MALFORMED)
def test_html_serve_and_compare_refuse_a_malformed_report_in_one_sentence(tmp_path, capsys, mutate, clause):
    report = sample_report()
    mutate(report)
    path = _write(tmp_path, report)
    good = _write(tmp_path, sample_report(), "good.json")
    for argv in _commands(path, good, tmp_path):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err == f"pytest-memtrack: error: {str(path)!r} is not a valid pytest-memtrack JSON report: {clause}.\n"
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize(("literal", "shown"), NOT_FINITE)
def test_a_number_json_does_not_have_is_refused_by_every_command(tmp_path, capsys, literal, shown):
    path = _with_score(tmp_path, literal)
    good = _write(tmp_path, sample_report(), "good.json")
    for argv in _commands(path, good, tmp_path):
        assert cli.main(argv) == 2, argv
        assert capsys.readouterr().err == (
            f"pytest-memtrack: error: {str(path)!r} is not a valid pytest-memtrack JSON report: it contains "
            f"{shown}, which is not a finite number (a report holds finite numbers only).\n")


def test_the_reports_that_made_the_server_answer_500_are_refused_before_it_serves(tmp_path):
    # What `serve` did with them: load the file, then answer 500 on / (summary {}), on the leaks (a null package,
    # Infinity, NaN) and on the package itself.
    empty_summary = sample_report()
    empty_summary["summary"] = {}
    null_package = sample_report()
    null_package["packages"]["app"] = None
    for path in (_write(tmp_path, empty_summary, "a.json"), _write(tmp_path, null_package, "b.json"),
                 _with_score(tmp_path, "Infinity")):
        with pytest.raises(ReportError):
            load_report(str(path))


def test_every_report_that_loads_is_served_without_a_500(tmp_path):
    for report in (sample_report(), empty_report()):
        app = App(ReportSource(load_report(str(_write(tmp_path, report)))), mode="saved report")
        for target in ("/", "/api/packages/memory/summary", "/api/packages/memory/leaks?threshold=0",
                       "/api/packages/memory/optimization-suggestions", "/api/packages/memory/app"):
            assert app.handle("GET", target, {}).status in (200, 404), target


def test_extra_keys_and_nulls_the_format_allows_are_accepted():
    report = sample_report()
    report["future_section"] = {"anything": [1, "two"]}
    report["packages"]["app"]["memory_metrics"].update(current_memory_usage=None, memory_footprint=None,
                                                       last_memory_check=None, something_new="x")
    report["tests"][0]["future_field"] = {"x": 1}
    report["tests"][0]["hunt"]["kinds"]["future_kind"] = {"leaking": False, "score": 0.0, "per_run": 0.0}
    del report["package_histories"]
    assert check_report(copy.deepcopy(report), "r") == report


def test_a_report_built_in_memory_with_nan_is_refused_too():
    report = sample_report()
    report["summary"]["total_peak_memory"] = math.nan
    with pytest.raises(ReportError, match=r"^r is not a valid pytest-memtrack JSON report: summary.total_peak_memory "
                                          r"is nan, not a finite number\.$"):
        check_report(report, "r")


def test_a_dotted_package_name_is_quoted_in_the_path_of_the_field():
    report = sample_report()
    report["packages"]["zope.interface"] = None
    with pytest.raises(ReportError, match=r"packages\['zope.interface'\] is null, not an object\.$"):
        check_report(report, "r")
