"""Allocations made far below the test's code (through chains of standard library calls) count at their full size:
a hunt's growth per run matches a plain tracemalloc measurement of the same calls, and only a test that needs them
pays for deeper traces."""

from __future__ import annotations

import copy
import gc
import json
import os
import tracemalloc
from collections.abc import Callable

import pytest

from pytest_memtrack.hunt import readings
from pytest_memtrack.hunt import runner as hunting

pytestmark = pytest.mark.skipif(tracemalloc.is_tracing(), reason="the hunt needs tracing of its own")

PAYLOAD_SOURCE = """{"rows": [{"id": i, "tags": ["a", "b"], "meta": {"span": [i, i + 1], "seen": {"x": [i]}}}
                  for i in range(60)]}"""
PAYLOAD = eval(PAYLOAD_SOURCE)  # the same payload as the hunted test file's below
TEXT = json.dumps(PAYLOAD)
KEPT: list[object] = []


def keep_a_deep_copy() -> None:
    # copy.deepcopy -> _deepcopy_dict -> deepcopy -> _deepcopy_list -> deepcopy -> _deepcopy_dict -> ...: most
    # of the copy is allocated 5 to 9 standard library frames below this line
    KEPT.append(copy.deepcopy(PAYLOAD))


NESTED: object = "leaf"
for _ in range(8):
    NESTED = [{"level": [NESTED, "x"]}]


def keep_a_copy_of_a_deeply_nested_structure() -> None:
    # 6 stdlib frames a level (deepcopy and _deepcopy_list/_deepcopy_dict for each of its three containers), 8 levels:
    # the innermost allocations are about 50 frames below this line, beyond the first probe's 12 and within 64 (what
    # lies deeper than 64 frames stays of unknown caller and uncharged: 12 levels read 79% of plain on CPython 3.13)
    KEPT.append(copy.deepcopy([NESTED] * 40))


def keep_decoded_json() -> None:
    # json.loads -> JSONDecoder.decode -> JSONDecoder.raw_decode -> the C scanner: three stdlib frames below
    KEPT.append(json.loads(TEXT))


def keep_bytes() -> None:
    KEPT.append(bytes(20_000))


def plain_bytes_per_call(call: Callable[[], None], calls: int = 20) -> float:
    """What each call keeps by a plain tracemalloc measurement: deep traces, nothing filtered but tracemalloc."""
    tracemalloc.start(64)
    try:
        call()
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(calls):
            call()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    tracemalloc_file = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(tracemalloc_file).compare_to(before.filter_traces(tracemalloc_file), "filename")
    return sum(stat.size_diff for stat in stats) / calls


def hunt_of(call: Callable[[], None]) -> tuple[hunting.HuntResult, list[int]]:
    """The hunt of a test that runs ``call``, and the traceback limit each of its runs was traced with."""
    limits: list[int] = []

    def run_once() -> bool:  # the test's code runs frames below the hunt's, as under pytest's protocol
        return protocol(call)

    def protocol(call: Callable[[], None]) -> bool:
        return runtest(call)

    def runtest(call: Callable[[], None]) -> bool:
        call()
        limits.append(tracemalloc.get_traceback_limit())
        return True

    return hunting.hunt(run_once, hunting.HuntParameters(max_runs=10)), limits


@pytest.fixture(autouse=True)
def _forget() -> object:
    yield
    KEPT.clear()


@pytest.mark.parametrize("call, probe_frames", [
    (keep_a_deep_copy, readings.PROBE_FRAMES[:1]),
    (keep_decoded_json, readings.PROBE_FRAMES[:1]),
    (keep_a_copy_of_a_deeply_nested_structure, readings.PROBE_FRAMES),  # 12 frames do not reach the test's line
], ids=["copy.deepcopy", "json.loads", "copy.deepcopy-nested-8-levels"])
def test_a_leak_allocated_deep_in_the_standard_library_is_measured_at_its_full_size(
        call: Callable[[], None], probe_frames: tuple[int, ...]) -> None:
    plain = plain_bytes_per_call(call)
    KEPT.clear()
    result, limits = hunt_of(call)
    memory = result.kinds["memory"]
    assert memory.leaking, result.kinds
    assert 0.8 * plain <= memory.per_run <= 1.2 * plain, (memory.per_run, plain)
    # the verdict's runs were all traced alike; deep traces only for the probe that told whose those bytes were
    probe = [frames for frames in probe_frames for _ in range(readings.PROBE_RUNS)]
    assert limits[-len(probe):] == probe and set(limits[:-len(probe)]) == {readings.TRACE_FRAMES}, limits
    assert result.probe_runs == len(probe)
    assert not result.kinds["native"].leaking, result.kinds  # deep traces' own bookkeeping is not native growth


def test_a_leak_allocated_by_the_tests_own_line_keeps_the_cheap_traces() -> None:
    plain = plain_bytes_per_call(keep_bytes)
    KEPT.clear()
    result, limits = hunt_of(keep_bytes)
    assert 0.8 * plain <= result.kinds["memory"].per_run <= 1.2 * plain
    assert set(limits) == {readings.TRACE_FRAMES} and result.probe_runs == 0


DEEP_COPY_KEPT = f"""
import copy
import pytest

PAYLOAD = {PAYLOAD_SOURCE}
KEPT = []


@pytest.mark.max_leak_score(0.1)
def test_deep_copy_kept():
    KEPT.append(copy.deepcopy(PAYLOAD))
"""


def test_a_hunted_test_is_charged_what_it_allocated_deep_in_the_standard_library(
        pytester: pytest.Pytester) -> None:
    plain = plain_bytes_per_call(keep_a_deep_copy)
    pytester.makepyfile(test_deep=DEEP_COPY_KEPT)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest",
                                "--memtrack", "--memtrack-json=report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*2 deeply traced*", "*test_deep.py:11: *"])  # the line of the test's code
    report = json.loads((pytester.path / "report.json").read_text())
    memory = report["tests"][0]["hunt"]["kinds"]["memory"]
    assert 0.8 * plain <= memory["per_run"] <= 1.2 * plain, (memory["per_run"], plain)


HERE = os.path.abspath(__file__)
STDLIB = os.path.abspath(os.path.dirname(os.__file__))
HUNT = os.path.abspath(readings.__file__)
PYTEST = os.path.abspath(pytest.__file__)


@pytest.mark.parametrize("frames, total, owner", [
    ([(f"{STDLIB}/copy.py", 1), (f"{STDLIB}/copy.py", 2), (f"{STDLIB}/copy.py", 3)], 9, "unknown"),
    ([(f"{STDLIB}/copy.py", 1), (f"{STDLIB}/copy.py", 2), (f"{STDLIB}/copy.py", 3)], 3, "test"),
    ([(f"{STDLIB}/copy.py", 1)] * 5 + [(HERE, 10), (PYTEST, 1)], 40, "test"),
    ([(f"{STDLIB}/json/decoder.py", 1), (PYTEST, 1), (HERE, 10)], 40, "other"),
    ([(HERE, 10), (HUNT, 1), (PYTEST, 1)], 40, "other"),  # the hunt called the test's code (a finalizer)
    ([(HERE, 10), (PYTEST, 1), (PYTEST, 2), (HUNT, 1)], 40, "test"),
], ids=["stdlib-only-deeper", "stdlib-only-whole-stack", "code-below-stdlib", "harness-first", "called-by-the-hunt",
        "run-by-the-hunt"])
def test_an_allocation_belongs_to_the_first_frame_that_is_not_the_standard_librarys(
        frames: list[tuple[str, int]], total: int, owner: str) -> None:
    assert readings._owner(frames, total) == owner
