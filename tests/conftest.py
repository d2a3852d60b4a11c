import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def sample_report():
    from samples import sample_report as make

    return make()
