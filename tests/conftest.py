import os

import pytest

pytest_plugins = ["pytester"]

#: Debian's chromium (``bash .ci/install-browser``); playwright's own browsers are never downloaded.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole test process (each test opens its own context or page)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run `bash .ci/install-browser` to install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def wide_terminal(monkeypatch):
    """A terminal wide enough for a test to read each of the plugin's sentences on one line (the plugin fits its
    lines to the terminal's width: ``COLUMNS``, which pytester's runs, in-process or not, read)."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def sample_report():
    from samples import sample_report as make

    return make()
