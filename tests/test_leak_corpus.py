"""End-to-end: the plugin's verdicts on a corpus of leaking and benign tests (tests/corpus/)."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
from once import once_per_session

CORPUS = pathlib.Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def corpus_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs the corpus once per session, shared by xdist's workers, in a subprocess (real process: fds, threads
    and RSS are its own)."""
    return once_per_session(tmp_path_factory, "corpus", run_corpus)


def run_corpus(work: pathlib.Path) -> dict:
    import subprocess
    import sys

    for name in ("leaking_cases.py", "benign_cases.py"):
        (work / f"test_{name}").write_text((CORPUS / name).read_text())
    report = work / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest",
         "--memtrack", f"--memtrack-json={report}", "-q", "-rA"],
        cwd=work, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert report.exists(), result.stdout + result.stderr
    data = json.loads(report.read_text())
    data["_stdout"] = result.stdout
    data["_returncode"] = result.returncode
    return data


def _tests(report: dict, prefix: str) -> dict[str, dict]:
    return {t["nodeid"].split("::")[-1]: t for t in report["tests"] if t["nodeid"].startswith(prefix)}


def _leaking_names() -> list[str]:
    return [line.split("(")[0][4:] for line in (CORPUS / "leaking_cases.py").read_text().splitlines()
            if line.startswith("def test_")]


def _benign_names() -> list[str]:
    return [line.split("(")[0][4:] for line in (CORPUS / "benign_cases.py").read_text().splitlines()
            if line.startswith("def test_")]


@pytest.mark.slow
@pytest.mark.parametrize("name", _leaking_names())
def test_every_leaking_case_fails_its_marker(corpus_report: dict, name: str) -> None:
    entry = _tests(corpus_report, "test_leaking_cases.py")[name]
    assert entry["outcome"] == "failed", entry
    assert entry["leaking"] is True
    assert entry["leak_score"] > entry["limit"] == 0.1
    first = entry["message"].splitlines()[0]
    assert first.startswith("memtrack: ") and " leaks " in first and first.endswith(" > limit 0.1)"), first
    assert "limit max_leak_score(0.1)" in entry["message"]


@pytest.mark.slow
@pytest.mark.parametrize("name", _benign_names())
def test_every_benign_case_passes_its_marker(corpus_report: dict, name: str) -> None:
    entry = _tests(corpus_report, "test_benign_cases.py")[name]
    assert entry["outcome"] == "passed", entry
    assert entry["leaking"] is False
    assert entry["leak_score"] <= 0.1


@pytest.mark.slow
def test_each_leak_is_reported_under_the_kind_that_leaked(corpus_report: dict) -> None:
    tests = _tests(corpus_report, "test_leaking_cases.py")

    def leaking_kinds(name: str) -> set[str]:
        return {k for k, v in tests[name]["hunt"]["kinds"].items() if v["leaking"]}

    assert "memory" in leaking_kinds("test_leak_global_list_of_buffers")
    assert leaking_kinds("test_leak_file_descriptor") >= {"fds"}
    assert leaking_kinds("test_leak_thread_left_running") >= {"threads"}
    assert leaking_kinds("test_leak_native_memory_invisible_to_tracemalloc") == {"native"}
    # Python memory grew a little in the first run, so the holder sizes were taken then: the native reading's
    # baseline moves with what they keep (it read ~-350 KB there before, and the native leak scored 0)
    assert "native" in leaking_kinds("test_leak_native_buffer_beside_a_little_python_state")
    # memory no allocator hands out: a shared mapping, a shared library ctypes never unloads
    assert leaking_kinds("test_leak_shared_memory_mapping_kept_per_call") >= {"native"}
    if "test_leak_shared_library_loaded_per_call" in tests and tests["test_leak_shared_library_loaded_per_call"]["hunt"]:
        assert leaking_kinds("test_leak_shared_library_loaded_per_call") == {"native"}


@pytest.mark.slow
def test_slow_filling_bounded_structures_get_the_runs_to_show_their_bound(corpus_report: dict) -> None:
    tests = _tests(corpus_report, "test_benign_cases.py")
    deque_hunt = tests["test_benign_deque_of_twenty_filling_one_entry_per_call"]["hunt"]
    assert deque_hunt["verdict_runs"] > 20  # it ran until the deque was full, then judged the runs after
    slowing = tests["test_benign_growth_that_slows_to_a_stop"]["hunt"]
    assert slowing["verdict_runs"] > 7  # not convicted while it still grew


@pytest.mark.slow
def test_intermittent_leaks_are_repeated_until_their_growth_recurs(corpus_report: dict) -> None:
    tests = _tests(corpus_report, "test_leaking_cases.py")
    for name in ("test_leak_on_every_other_call", "test_leak_on_every_third_call"):
        readings = tests[name]["hunt"]["readings"]
        steps = [b["traced"] - a["traced"] for a, b in zip(readings, readings[1:])]
        assert 0 in steps and sum(step > 10_000 for step in steps) >= 3, steps


@pytest.mark.slow
def test_the_failure_names_the_culprit_line_and_what_grew(corpus_report: dict) -> None:
    entry = _tests(corpus_report, "test_leaking_cases.py")["test_leak_global_list_of_buffers"]
    sites = entry["hunt"]["evidence"]["allocation_sites"]
    assert sites[0]["file"] == "test_leaking_cases.py"
    source = (CORPUS / "leaking_cases.py").read_text().splitlines()
    assert "GLOBAL_LIST.append(bytes(50_000))" in source[sites[0]["line"] - 1]
    assert 45_000 < sites[0]["bytes_per_run"] < 60_000
    assert f"test_leaking_cases.py:{sites[0]['line']}" in entry["message"]
    fd_entry = _tests(corpus_report, "test_leaking_cases.py")["test_leak_file_descriptor"]
    assert any("fd-leak.txt" in fd for fd in fd_entry["hunt"]["evidence"]["new_fds"])
    thread_entry = _tests(corpus_report, "test_leaking_cases.py")["test_leak_thread_left_running"]
    assert any("leaky-worker" in t for t in thread_entry["hunt"]["evidence"]["new_threads"])


@pytest.mark.slow
def test_hunts_reach_a_verdict_in_seven_traced_runs_on_average(corpus_report: dict) -> None:
    """Runs under tracing (2-20 times slower) as before the screen; the screen's own runs (untraced, or traced
    without snapshots) come on top, 5.4 a test on this corpus."""
    hunts = [t["hunt"] for t in corpus_report["tests"] if t["hunt"]]
    traced = [hunt["verdict_runs"] - hunt.get("screen", {}).get("runs", 0) for hunt in hunts]
    assert traced and sum(traced) / len(traced) <= 7, traced
    runs = [hunt["verdict_runs"] for hunt in hunts]
    assert sum(runs) / len(runs) <= 11, runs


@pytest.mark.slow
def test_leaking_tests_show_in_the_short_summary_and_the_memtrack_section(corpus_report: dict) -> None:
    out = corpus_report["_stdout"]
    assert corpus_report["_returncode"] == 1
    assert "FAILED test_leaking_cases.py::test_leak_global_list_of_buffers" in out
    assert "LEAK test_leaking_cases.py::test_leak_thread_left_running" in out


def _readings(rss_step: int, accounted_step: int) -> list:
    from pytest_memtrack.hunt.verdict import Reading

    return [Reading(traced=1000, blocks=0, rss=100_000_000 + i * rss_step, fds=3, threads=1, objects=0,
                    accounted=50_000_000 + i * accounted_step) for i in range(6)]


def test_native_growth_is_rss_beyond_everything_traced_not_only_the_tests() -> None:
    from pytest_memtrack.hunt.verdict import HuntParameters, judge

    # pytest keeps 1 MiB of Python objects a run (a report per subTest): traced, though not the test's
    assert judge(_readings(1 << 20, 1 << 20), HuntParameters())["native"].score == 0
    # a C extension keeps 1 MiB a run: tracemalloc sees none of it
    assert judge(_readings(1 << 20, 0), HuntParameters())["native"].leaking


@pytest.mark.slow
@pytest.mark.parametrize("name, holder", [
    ("test_leak_global_list_of_buffers", "test_leaking_cases.GLOBAL_LIST"),
    ("test_leak_cache_keyed_by_request_id", "test_leaking_cases.CACHE_BY_REQUEST"),
    ("test_leak_class_level_registry", "test_leaking_cases.Registry.instances"),
    ("test_leak_unbounded_lru_cache", "test_leaking_cases.unbounded"),
    ("test_leak_string_grown_in_module_state", "test_leaking_cases.GROWING"),
    ("test_leak_class_defined_per_call_kept_in_a_registry", "test_leaking_cases.SIGNATURES"),
    ("test_leak_thread_left_running", "threading._active"),
    ("test_leak_logging_handler_added_per_call", "<logging.Logger>.handlers"),
    ("test_leak_on_every_other_call", "test_leaking_cases.SOMETIMES"),
    ("test_leak_default_argument_that_accumulates", "test_leaking_cases._remember.<default of seen>"),
    ("test_leak_list_kept_inside_a_module_dict", "test_leaking_cases.EVENTS['received']"),
    ("test_leak_codec_search_function_registered_per_call", "codecs.<search functions registered with codecs.register>"),
    ("test_leak_atexit_callback_registered_per_call", "atexit.<callbacks registered with atexit.register>"),
    ("test_leak_signal_handler_chained_per_call", "signal.getsignal(SIGUSR2)"),
    ("test_leak_context_variable_created_per_call", "contextvars.<variables set in the current context>"),
])
def test_the_evidence_names_what_keeps_the_leak_alive(corpus_report: dict, name: str, holder: str) -> None:
    entry = _tests(corpus_report, "test_leaking_cases.py")[name]
    holders = [h["holder"] for h in entry["hunt"]["evidence"]["holders"]]
    assert holders and holders[0] == holder, holders
    assert f"kept alive by: {holder}" in entry["message"]
