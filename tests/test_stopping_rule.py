"""The hunt's stopping rule needs evidence both ways (pure functions of readings), and the readings see memory
outside malloc and holders kept by the interpreter."""

from __future__ import annotations

import atexit
import codecs
import collections
import contextvars
import mmap
import signal
import sys

import pytest

from pytest_memtrack.hunt import names, native, registries, retention
from pytest_memtrack.hunt.verdict import (
    CONFIRM_RUNS,
    HuntParameters,
    Reading,
    confirmed,
    judge,
    min_to_convict,
    run_cap,
    should_stop,
    slowing,
)

PARAMS = HuntParameters()


def readings_of(steps: list[int], *, start: int = 100_000) -> list[Reading]:
    """Readings whose traced bytes take ``steps`` from ``start`` (native, fds and threads flat)."""
    values = [start]
    for step in steps:
        values.append(values[-1] + step)
    return [Reading(traced=v, blocks=0, rss=0, fds=3, threads=1, objects=0, native=0) for v in values]


def test_a_test_that_kept_nothing_stops_after_the_minimum() -> None:
    assert should_stop(readings_of([0, 0, 0]), PARAMS)
    assert should_stop(readings_of([8, -8, 16]), PARAMS)  # noise within a few bytes


@pytest.mark.parametrize("steps", [[0, 16_000, 0], [16_000, 0, 0], [0, 0, 16_000]])
def test_growth_that_may_recur_is_not_acquitted_early(steps: list[int]) -> None:
    """Before: the sign test scored one growing step 0 and "clearly benign" ended the hunt after 3 runs."""
    assert not should_stop(readings_of(steps), PARAMS)


def test_steady_growth_is_not_convicted_before_half_the_measured_runs() -> None:
    steady = [3_000] * 4
    assert min_to_convict(PARAMS) == 4
    assert not should_stop(readings_of(steady[:3]), PARAMS)  # before: convicted here, a 6-slot table included
    assert should_stop(readings_of(steady), PARAMS)
    patient = HuntParameters(max_runs=30)
    assert min_to_convict(patient) == 14  # raising --memtrack-max-runs gives a slow cache the runs to fill
    assert not should_stop(readings_of([3_000] * 13), patient)


def test_growth_that_slows_down_is_not_convicted_early() -> None:
    assert slowing([0, 3368, 6392, 6520])  # marshmallow's test_context_load_dump: 3368, 3024, 128 bytes
    assert not slowing([0, 1000, 2000, 3000, 4000])
    assert not should_stop(readings_of([12_000, 6_000, 3_000, 1_500, 100]), PARAMS)


def test_a_slowing_conviction_is_confirmed_by_more_runs_that_must_leak_by_themselves() -> None:
    series = readings_of([9_000, 9_000, 9_000, 9_000, 9_000, 9_000, 9_000, 1_000])
    extension = run_cap(series, PARAMS)
    assert extension.confirm and extension.cap == PARAMS.max_runs + CONFIRM_RUNS
    # a deque of 20 that filled at the 17th measured run: over the whole hunt still a leak, after it a plateau
    filled = readings_of([3_217] * 17 + [184, 120, 184, 0, 0])
    assert judge(filled, PARAMS)["memory"].leaking
    assert not confirmed(filled, 17, PARAMS)["memory"].leaking
    leak = readings_of([3_217] * 22)
    assert confirmed(leak, 17, PARAMS)["memory"].leaking
    assert confirmed(filled, None, PARAMS) == judge(filled, PARAMS)


def test_one_or_two_growing_steps_at_the_end_earn_runs_to_recur() -> None:
    every_fourth = readings_of([0, 16_000, 0, 0, 0, 16_000, 0, 0])
    assert not judge(every_fourth, PARAMS)["memory"].leaking
    assert run_cap(every_fourth, PARAMS).cap == PARAMS.max_runs + 8
    tiny = readings_of([0, 40, 0, 0, 0, 0, 0, 0])  # a one-off of 40 bytes could not convict if it recurred
    assert run_cap(tiny, PARAMS).cap == PARAMS.max_runs


def test_sparse_growth_that_would_convict_gets_runs_to_show_whether_it_recurs() -> None:
    """Seen hunting marshmallow 4.4.0's suite: a table churning through class names resized at runs 1, 2 and 7."""
    resizes = [2552, 2440, 0, 0, 0, 0, 2200, 0]
    assert judge(readings_of(resizes), PARAMS)["memory"].leaking  # three steps: a verdict of leaking at 8 runs
    assert run_cap(readings_of(resizes), PARAMS).cap == PARAMS.max_runs + 8
    assert not judge(readings_of(resizes + [0] * 8), PARAMS)["memory"].leaking  # it did not recur
    assert judge(readings_of(resizes + [0, 0, 2300, 0, 0, 2300, 0, 0]), PARAMS)["memory"].leaking  # it did
    every_other = [12_000, 0] * 4  # grows in half the runs: no longer sparse, judged at max_runs
    assert run_cap(readings_of(every_other), PARAMS).cap == PARAMS.max_runs


@pytest.mark.skipif(native.mapped_bytes() is None, reason="no /proc/self/smaps_rollup here")
def test_the_native_reading_sees_a_shared_mapping_that_malloc_never_handed_out() -> None:
    before = native.mapped_bytes()
    mapping = mmap.mmap(-1, 4 << 20)
    mapping.write(b"x" * len(mapping))
    after = native.mapped_bytes()
    mapping.close()
    assert before is not None and after is not None and after - before >= 4 << 20
    kept = [bytearray(1 << 20) for _ in range(8)]  # 8 MiB through malloc: private anonymous, not counted here
    assert abs((native.mapped_bytes() or 0) - (before or 0)) < 1 << 20
    del kept


def test_interpreter_registries_are_counted() -> None:
    sizes = registries.registry_sizes()
    callback = atexit.register(lambda: None)
    search = codecs.register(lambda name: None) or (lambda: None)
    token = contextvars.ContextVar("memtrack_probe").set(1)
    try:
        grown = registries.registry_sizes()
        for name in (registries.ATEXIT, registries.CONTEXT):
            assert grown[name][0] == sizes[name][0] + 1, name
        if registries.CODECS in sizes:
            assert grown[registries.CODECS][0] == sizes[registries.CODECS][0] + 1
    finally:
        atexit.unregister(callback)
        del token, search


def test_a_python_signal_handler_is_a_root() -> None:
    def handler(signum, frame):  # pragma: no cover - never delivered
        pass

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        assert registries.registry_roots()[id(handler)] == "signal.getsignal(SIGUSR2)"
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_deque_bounded_by_its_maxlen_says_how_many_runs_it_takes_to_fill() -> None:
    module = type(sys)("memtrack_bounded_probe")
    module.RECENT = collections.deque(maxlen=20)
    module.EVENTS = {"received": []}
    sys.modules[module.__name__] = module
    try:
        containers: dict = {}
        before = names.named_sizes(containers)
        assert containers[("memtrack_bounded_probe", "RECENT")] is module.RECENT
        for _ in range(4):
            module.RECENT.append(object())
        assert retention.runs_to_fill(before, 4, containers) == 16
        module.EVENTS["received"].append(object())  # an unbounded container grew too: no plateau to wait for
        assert retention.runs_to_fill(before, 4, containers) is None
        assert ("memtrack_bounded_probe", "EVENTS['received']") in before
    finally:
        del sys.modules[module.__name__]
