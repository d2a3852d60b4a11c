import os
import sys
import textwrap

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


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    """Writes a real package into a temporary directory on sys.path; removes it from sys.modules after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def make(name: str, source: str) -> str:
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield make
    for name in names:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]
