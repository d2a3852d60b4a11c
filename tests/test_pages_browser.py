"""The report and the dashboard in a real headless Chromium: both widths, both colour schemes, a 10,000-test report,
the filters' state in the URL, and the live dashboard against a real server until its session finishes.

Uses conftest's one ``browser`` per test process (Debian's chromium; skipped without it or without playwright).
"""

from __future__ import annotations

import os
import time

import pytest
from samples import large_report, leaking_test, passing_test, sample_report

from pytest_memtrack.report.html import write_html
from pytest_memtrack.server import dashboard
from pytest_memtrack.server.progress import LiveSession
from pytest_memtrack.server.sources import ReportSource
from pytest_memtrack.server.transport import start_server

pytestmark = pytest.mark.slow  # a real browser: playwright's driver and chromium are subprocesses


def watch(page):
    """Console errors and warnings, script errors and any request off this machine, as sentences."""
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(("file://", "data:", "http://127.0.0.1:"))
            else problems.append(f"network: {r.url}"))
    return problems


@pytest.fixture
def context(browser):
    contexts = []

    def make(width=1400, scheme="light"):
        made = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
        contexts.append(made)
        return made

    yield make
    for made in contexts:
        made.close()


def long_report():
    report = sample_report()
    report["tests"].append(passing_test("tests/integration/test_a_rather_long_module_name.py::TestTheWholeThing::"
                                        "test_with_a_parameter_id_that_never_ends[" + "x" * 120 + "]"))
    report["run"]["argv"] = ["pytest", "--memtrack", "--memtrack-json=" + "/very/long/path" * 12 + "/report.json"]
    return report


@pytest.mark.parametrize("width", [390, 1400])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_report_fits_the_width_in_either_scheme_without_console_errors(context, tmp_path, width, scheme):
    path = tmp_path / "report.html"
    write_html(long_report(), str(path))
    page = context(width, scheme).new_page()
    problems = watch(page)
    page.goto(path.as_uri())
    assert page.locator("#verdict").inner_text() == "1 of 4 tests leak"
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "nothing spills sideways"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(15, 20, 27)" if scheme == "dark" else "rgb(255, 255, 255)")
    name = page.locator("#tests-table tbody tr").nth(3).locator("td").first
    assert name.bounding_box()["width"] > min(width, 1200) * 0.45, "a test id gets the row's width, not a narrow column"
    assert problems == []


def test_a_10000_test_report_renders_a_few_thousand_elements_and_pages_filters_and_sorts_from_the_url(context,
                                                                                                      tmp_path):
    path = tmp_path / "large.html"
    report = large_report(10_000)
    write_html(report, str(path))
    matching = [t for t in report["tests"] if "number_42" in t["nodeid"]]
    passed = sum(1 for t in matching if t["outcome"] == "passed")
    failed = sum(1 for t in report["tests"] if t["outcome"] == "failed")
    assert path.stat().st_size < 4 * 1024 * 1024
    page = context(1400).new_page()
    problems = watch(page)
    page.goto(path.as_uri())
    assert page.evaluate("document.getElementsByTagName('*').length") < 3500, "not the 100,000 of one row per test"
    rows = page.locator("#tests-table tbody tr")
    assert rows.count() == 200
    assert page.locator("#test-count").inner_text() == "Showing 1–200 of 10,000 matching tests (10,000 in all)"
    page.locator("#page-next").click()
    assert page.locator("#page-label").inner_text() == "Page 2 of 50"
    assert page.evaluate("location.hash") == "#tests?page=2"

    page.locator("#test-filter").fill("number_42")
    page.wait_for_selector(f"#test-count:has-text('of {len(matching)} matching tests')")  # after the debounce
    assert "q=number_42" in page.evaluate("location.hash")
    page.locator("input[name=outcome][value=passed]").check()
    assert page.locator("label", has=page.locator("input[name=outcome][value=failed]")).inner_text().strip() == f"failed ({failed})"
    shown = page.locator("#test-count").inner_text()
    assert shown == f"Showing 1–{passed} of {passed} matching tests (10,000 in all)"
    ids = page.eval_on_selector_all("#tests-table tbody tr", "rows => rows.map(r => r.dataset.nodeid)")
    assert ids and all("number_42" in i for i in ids)

    header = page.locator("#tests-table th[data-key=nodeid] button")
    header.focus()
    page.keyboard.press("Enter")  # the sort headers are buttons: the keyboard sorts too
    assert page.locator("#tests-table th[data-key=nodeid]").get_attribute("aria-sort") == "ascending", "A to Z first"
    ids = page.eval_on_selector_all("#tests-table tbody tr", "rows => rows.map(r => r.dataset.nodeid)")
    assert ids == sorted(ids, key=str.lower)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none", "focus is visible"

    url = page.url
    again = context(1400).new_page()
    problems += watch(again)
    again.goto(url)
    assert again.locator("#test-filter").input_value() == "number_42"
    assert again.locator("input[name=outcome][value=passed]").is_checked()
    assert again.locator("#test-count").inner_text() == shown
    assert again.locator("#tests-table th[data-key=nodeid]").get_attribute("aria-sort") == "ascending"

    again.locator("#test-filter").fill("")
    again.locator("input[name=outcome][value=passed]").uncheck()
    again.locator("#leaking-only").check()
    link = again.locator("#tests-table tbody tr.leaking a").first
    target = link.get_attribute("href")
    link.click()
    assert again.locator(target).is_visible() and again.locator(target).get_attribute("class") == "leak"
    assert again.locator("article.leak").count() == 3, "thirty leaking tests, three culprits, three cards"
    assert problems == []


def _report(nodeid, when, outcome="passed", memtrack=None):
    report = pytest.TestReport(nodeid, ("t.py", 1, nodeid), {}, outcome, None, when)
    if memtrack is not None:
        report.memtrack = memtrack
    return report


def test_the_live_dashboard_shows_progress_then_the_finished_verdict_and_stops_polling(context, monkeypatch):
    monkeypatch.setattr(dashboard, "POLL_MS", 200)
    saved = sample_report()
    source = ReportSource(saved)
    session = LiveSession(source)
    session.collected(3)
    session.test_started("tests/test_app.py::test_leaks_a_cache_entry_per_request")
    with start_server(source, "127.0.0.1", 0, session=session) as running:
        page = context(390, "dark").new_page()
        problems = watch(page)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(running.url)
        assert page.locator("#progress-text").inner_text().startswith("0 of 3 tests done")
        assert "test_leaks_a_cache_entry_per_request" in page.locator("#current-test").inner_text()

        leak = leaking_test()
        for when in ("setup", "call", "teardown"):
            session.test_logged(_report(leak["nodeid"], when, "failed" if when == "call" else "passed",
                                        {k: leak[k] for k in ("leak_score", "limit", "leaking", "hunt", "message")}
                                        if when == "teardown" else None))
        page.wait_for_selector("#progress-text:has-text('1 of 3 tests done')")  # (the page's CSP forbids eval)
        assert page.locator("#verdict").inner_text() == "1 of 1 tests leak"
        assert page.locator("#leak-1").is_visible() and "app/cache.py:12" in page.locator("#leak-1").inner_text()
        assert page.locator("#status").inner_text().startswith("live")

        session.finished(saved, ["/tmp/run/memtrack.json"])
        page.wait_for_selector("#live[data-state=finished]")
        assert page.locator("#verdict").inner_text() == "1 of 3 tests leak"
        assert "/tmp/run/memtrack.json" in page.locator("#reports").inner_text()
        assert page.locator("#status").inner_text().startswith("finished")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        polls = len(requests)
        time.sleep(0.8)  # four poll intervals
        assert len(requests) == polls, "a finished session is not polled any more"
    assert problems == []


def test_a_saved_report_is_served_statically(context):
    with start_server(ReportSource(sample_report()), "127.0.0.1", 0, mode="saved report") as running:
        page = context(1400, "light").new_page()
        problems = watch(page)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(running.url)
        assert page.locator("#status").inner_text() == "saved report · not updated"
        assert page.locator("#packages-table tbody tr").count() == 3
        page.locator("#packages-table-filter").fill("js")
        page.wait_for_selector("#packages-table-count:has-text('1 of 3 packages shown')")
        assert page.locator("#packages-table tbody tr:visible").count() == 1
        time.sleep(0.3)
        assert len(requests) == 1, "one page load, no polling"
    assert problems == []


INNER = '''
import time
import pytest

_KEPT = []


@pytest.mark.max_leak_score(0.1)
def test_leaks():
    _KEPT.append(bytearray(4096))


@pytest.mark.parametrize("i", range(6))
def test_slow(i):
    time.sleep(0.4)
'''


def test_a_real_session_s_dashboard_follows_it_to_its_verdict_and_report_path(context, pytester):
    import subprocess
    import sys

    pytester.makepyfile(test_inner=INNER)
    json_path = pytester.path / "memtrack.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--memtrack", "--memtrack-serve=0", f"--memtrack-json={json_path}", "-q",
         "-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:anyio", "-p", "no:randomly"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEMTRACK_"))})
    try:
        line = process.stdout.readline()
        assert line.startswith("memtrack server: http://127.0.0.1:"), line
        page = context(1400, "light").new_page()
        problems = watch(page)
        page.goto(line.split(": ", 1)[1].strip())
        page.wait_for_selector("#progress-text:has-text('of 7 tests done')")  # once collected (the page polls)
        page.wait_for_selector("#live[data-state=finished]", timeout=30_000)
        assert page.locator("#verdict").inner_text() == "1 of 7 tests leak"
        assert str(json_path) in page.locator("#reports").inner_text()
        assert page.locator("#status").inner_text().startswith("finished")
    finally:
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 1, output
    assert problems == []
