"""The HTML report in a real headless Chromium: it loads from file:// without errors and its table sorts.

Needs Debian's chromium (``bash .ci/install-browser``) and the ``playwright`` package (its bundled browsers are not
used, so ``playwright install`` is never needed).
"""

from __future__ import annotations

import pytest
from samples import passing_test, sample_report

from pytest_memtrack.report.html import write_html

pytestmark = pytest.mark.slow  # a real browser (conftest's `browser`): playwright's driver and chromium are subprocesses


@pytest.fixture
def opened(browser, tmp_path):
    """Open a rendered report; yields (page, problems) where problems collects console errors and failed requests."""
    pages = []

    def open_report(report):
        path = tmp_path / "report.html"
        write_html(report, str(path))
        page = browser.new_page()
        pages.append(page)
        problems = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else problems.append(f"network: {r.url}"))
        page.goto(path.as_uri())
        return page, problems

    yield open_report
    for page in pages:
        page.close()


def score_column(page):
    texts = page.eval_on_selector_all("#tests-table tbody tr", "rows => rows.map(r => r.cells[4].textContent)")
    return [-1.0 if text == "—" else float(text) for text in texts]


def test_the_report_opens_from_a_file_shows_the_leak_and_sorts_by_leak_score_without_errors(opened):
    report = sample_report()
    report["tests"].append(passing_test("tests/test_app.py::test_mid", 0.05))
    page, problems = opened(report)

    assert page.locator("#verdict").inner_text() == "1 of 4 tests leak"
    leak = page.locator("#leak-1")
    assert leak.is_visible() and "test_leaks_a_cache_entry_per_request" in leak.inner_text()
    assert page.locator("#packages-table tbody tr").count() == 3
    chart = page.locator("#packages-table svg polyline").first
    assert chart.is_visible() and chart.bounding_box()["width"] > 50
    assert page.locator("#test-filter").is_visible(), "the script revealed the filter controls"

    before = score_column(page)
    header = page.locator("#tests-table th", has_text="leak score").locator("button")
    header.click()
    descending = score_column(page)
    header.click()
    ascending = score_column(page)
    assert descending == sorted(before, reverse=True)
    assert ascending == list(reversed(descending)) and ascending != before

    page.locator("#leaking-only").check()
    assert page.locator("#tests-table tbody tr:visible").count() == 1
    assert page.locator("#test-count").inner_text() == "Showing 1–1 of 1 matching tests (4 in all)"
    assert problems == []


def test_a_hostile_test_id_does_not_run_script_in_the_browser(opened):
    report = sample_report()
    report["tests"][0]["nodeid"] = 't.py::test[<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>]'
    page, problems = opened(report)
    assert page.evaluate("window.pwned === undefined")
    assert "<script>window.pwned=2</script>" in page.locator("#leak-1 h3").inner_text()
    assert problems == []


def test_with_javascript_off_every_test_shows_and_the_dead_controls_stay_hidden(browser, tmp_path):
    path = tmp_path / "report.html"
    write_html(sample_report(), str(path))
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(path.as_uri())
        assert page.locator("#tests-table tbody tr:visible").count() == 3
        assert page.locator("#leak-1").is_visible()
        assert not page.locator("#test-filter").is_visible()
    finally:
        context.close()
