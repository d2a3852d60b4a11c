"""The HTML report of a large suite: file size, render time, and in headless Chromium the load time, the elements
built and the cost of a filter keystroke.

    python benchmarks/bench_report.py                  # 10,000 tests
    python benchmarks/bench_report.py --tests 50000

The report model is the synthetic one of the tests (``tests/samples.large_report``): every 50th test hunted, 30
leaking through three culprits, 40 packages with 60 readings. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from samples import large_report

from pytest_memtrack.report.html import render_html

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=10_000)
    args = parser.parse_args()
    report = large_report(args.tests)
    started = time.perf_counter()
    page = render_html(report)
    rendered = time.perf_counter() - started
    size = len(page.encode("utf-8"))
    print(f"{args.tests:,} tests: {size / 1024 / 1024:.2f} MiB ({size / args.tests:.0f} B per test), "
          f"rendered in {rendered * 1000:.0f} ms")
    if not os.access(CHROMIUM, os.X_OK):
        print(f"{CHROMIUM} missing: no browser figures")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        path = Path(folder) / "report.html"
        path.write_text(page, encoding="utf-8")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        started = time.perf_counter()
        tab.goto(path.as_uri(), wait_until="load")
        loaded = time.perf_counter() - started
        elements = tab.evaluate("document.getElementsByTagName('*').length")
        # One filter pass as a reader triggers it: the input event, the 150 ms debounce, the filter and the page of
        # rows it renders (until the count line changes), less the debounce.
        cost = tab.evaluate("""() => new Promise(done => {
            const box = document.getElementById('test-filter'), count = document.getElementById('test-count');
            let t0 = 0;
            new MutationObserver(() => done(performance.now() - t0 - 150)).observe(count, {childList: true});
            box.value = 'number_4'; t0 = performance.now(); box.dispatchEvent(new Event('input')); })""")
        print(f"loaded in {loaded * 1000:.0f} ms, {elements:,} elements, one filter pass ~{max(cost, 0):.0f} ms "
              f"(after a 150 ms debounce)")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
