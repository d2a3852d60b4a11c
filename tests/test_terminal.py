"""The terminal: a leak leads with its culprit, paths read short, every line of ours fits the terminal's width, and
things are counted in words (one test, two tests)."""

from __future__ import annotations

import copy
import os
import shlex
import sysconfig

import pytest
from hypothesis import given
from hypothesis import strategies as st
from samples import leaking_test, sample_report

from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, fit_command
from pytest_memtrack.report.terminal import summary_lines, verdict_line
from pytest_memtrack.report.verdict import leak_line
from pytest_memtrack.units import plural

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")

# ------------------------------------------------------------------------------------------ pure pieces


def test_plural_counts_in_words():
    assert [plural(n, "test") for n in (0, 1, 2, 1000)] == ["0 tests", "1 test", "2 tests", "1,000 tests"]
    assert plural(1, "package") == "1 package" and plural(7, "package") == "7 packages"
    assert plural(2, "analysis", "analyses") == "2 analyses"


def test_paths_read_relative_to_the_rootdir_from_site_packages_or_from_the_standard_library():
    stdlib = sysconfig.get_paths()["stdlib"]
    assert short_path(os.path.join(stdlib, "uuid.py")) == f"{os.path.basename(stdlib)}/uuid.py"
    assert short_path("/proj/.venv/lib/python3.11/site-packages/jinja2/utils.py", "/proj") == \
        "site-packages/jinja2/utils.py"  # a virtualenv inside the project is still an installed package
    assert short_path("/usr/lib/python3/dist-packages/yaml/nodes.py") == "dist-packages/yaml/nodes.py"
    assert short_path("/proj/app/cache.py", "/proj/") == "app/cache.py"
    assert short_path("app/cache.py", "/proj") == "app/cache.py"  # the report's project files are relative already
    assert short_path("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"


words = st.lists(st.text(alphabet="abcdefghij:/.()-_=", min_size=1, max_size=30), min_size=1, max_size=30)


@given(words=words, indent=st.integers(0, 6), width=st.integers(20, 120))
def test_a_fitted_line_keeps_its_words_and_only_a_single_overlong_word_passes_the_width(words, indent, width):
    line = " " * indent + " ".join(words)
    lines = fit(line, width)
    assert " ".join(" ".join(lines).split()) == " ".join(words)
    assert all(len(part) <= width or len(part.split()) == 1 for part in lines)
    assert all(part.startswith(" " * (indent + 4)) for part in lines[1:])


@given(words=words, width=st.integers(20, 120))
def test_a_fitted_command_pasted_into_a_shell_is_the_same_command(words, width):
    lines = fit_command("  reproduce: ", ["pytest", *words], width)
    pasted = "\n".join(lines).removeprefix("  reproduce: ").replace("\\\n", "")
    assert shlex.split(pasted) == ["pytest", *words]
    assert len(lines[0]) <= max(width, len("  reproduce: pytest \\"))
    assert all(len(part) <= width or len(part.split()) <= 2 for part in lines[1:])  # a word and its " \"


def test_a_leak_line_leads_with_the_culprit_of_the_kind_that_leaked():
    memory = leaking_test()
    assert leak_line(memory) == "app/cache.py:12 leaks 50.0 KiB a run (score 0.83 > limit 0.1)"
    installed = copy.deepcopy(memory)
    installed["hunt"]["evidence"]["allocation_sites"] = [
        {"file": "/v/lib/python3.11/site-packages/lib/pool.py", "line": 7, "bytes_per_run": 100.0, "count_per_run": 1}]
    assert leak_line(installed).startswith("site-packages/lib/pool.py:7 leaks 50.0 KiB a run")
    installed["hunt"]["evidence"]["allocation_sites"] = []
    assert leak_line(installed) == "leaks 50.0 KiB of Python memory a run (score 0.83 > limit 0.1)"
    threads = copy.deepcopy(memory)
    threads["hunt"]["kinds"]["memory"] = {"leaking": False, "score": 0.0, "per_run": 0.0}
    threads["hunt"]["kinds"]["threads"] = {"leaking": True, "score": 0.9, "per_run": 1.0}
    threads["hunt"]["evidence"]["new_threads"] = ["poller"]
    assert leak_line(threads) == "leaks 1 thread a run (poller; score 0.83 > limit 0.1)"
    native = copy.deepcopy(threads)
    native["hunt"]["kinds"]["threads"] = {"leaking": False, "score": 0.0, "per_run": 0.0}
    native["hunt"]["kinds"]["native"] = {"leaking": True, "score": 0.5, "per_run": 3 * 1024 * 1024}
    assert leak_line(native) == "leaks 3.0 MiB of native memory a run (score 0.83 > limit 0.1)"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_summary_of_a_long_named_leak_fits_the_width(width):
    report = sample_report()
    report["tests"][0] = leaking_test("tests/integration/test_checkout_flow.py::TestCheckout::"
                                      "test_a_cart_that_is_abandoned_keeps_its_reservations[eu-west]")
    report["packages"]["json"]["package_name"] = "a.very.long.package.name.for.the.table"
    lines = summary_lines(report, verbose=1, width=width)
    nodeid = report["tests"][0]["nodeid"]
    assert [line for line in lines if len(line) > width and nodeid not in line] == []
    assert lines[lines.index(f"LEAK {nodeid}") + 1].startswith("  app/cache.py:12 leaks 50.0 KiB a run")
    assert any("…" in line for line in lines) or width >= 75  # a package name gives way to the figures
    assert lines[-1] == verdict_line(report) or len(verdict_line(report)) > width


def test_counts_in_the_verdict_line_are_words():
    report = sample_report()
    assert verdict_line(report).startswith("1 leaking test (2 hunted), 3 packages, ")
    report["summary"]["total_packages"] = 1
    report["tests"] = [t for t in report["tests"] if not t.get("leaking")]
    assert ", 1 package, " in verdict_line(report)


# ------------------------------------------------------------------------------------------ a real run

REALISTIC = """
import threading

import pytest


class ResponseRegistry:
    responses_by_request_identifier = {}


@pytest.mark.parametrize("tenant", ["a-tenant-with-a-rather-long-name"])
def test_a_registry_that_keeps_every_rendered_response_for_ever(tenant):
    key = (tenant, len(ResponseRegistry.responses_by_request_identifier))
    ResponseRegistry.responses_by_request_identifier[key] = bytearray(40_000)


STOP = threading.Event()


def test_a_background_poller_that_is_never_stopped():
    threading.Thread(target=STOP.wait, name="inventory-background-poller", daemon=True).start()


def test_plain():
    assert True
"""


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 60])
def test_no_line_of_the_failures_or_the_memtrack_section_exceeds_the_terminal(pytester, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    pytester.makepyfile(test_service_registry=REALISTIC)
    result = pytester.runpytest("--memtrack", "--memtrack-max-leak-score=0.1", "-v", "-rf",
                                "--memtrack-json=reports/memtrack.json", *NO_PLUGINS)
    result.assert_outcomes(failed=2, passed=1)
    lines = result.outlines
    ours = lines[next(i for i, line in enumerate(lines) if " FAILURES " in line):]
    # pytest's own: the short summary (cut by pytest to fit) and each failure's "___ name ___" header
    ours = [line for line in ours if not line.startswith(("FAILED ", "_"))]
    assert any(line.startswith("LEAK ") for line in ours)
    culprit = next(n for n, text in enumerate(REALISTIC.strip("\n").splitlines(), 1) if "bytearray(40_000)" in text)
    assert any(line.startswith(f"memtrack: test_service_registry.py:{culprit} leaks ") for line in ours), \
        "\n".join(ours)
    assert any(line.startswith("memtrack: leaks 1 thread a run") for line in ours), "\n".join(ours)
    assert "memtrack: JSON report: reports/memtrack.json" in ours
    # Only one word longer than the terminal passes it, whole (a node id, a dotted name): cut, it could not be copied.
    too_long = [line for line in ours if len(line) > width]
    assert any("[a-tenant-with-a-rather-long-name]" in line for line in too_long)
    assert all(len([w for w in line.split() if w not in ("LEAK", "\\")]) == 1 for line in too_long), too_long
