import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def wide_terminal(monkeypatch):
    """A terminal wide enough for a test to read each of the plugin's sentences on one line (the plugin fits its
    lines to the terminal's width: ``COLUMNS``, which pytester's runs, in-process or not, read)."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def sample_report():
    from samples import sample_report as make

    return make()
