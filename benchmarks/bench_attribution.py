"""Time one attribution pass (``attribution.measure_packages``) over a package that keeps many live objects.

A real package is written to a temporary directory on ``sys.path`` and imported; its module-level list is then
filled with N small objects (a rotating mix of dicts, lists, strings, ints and class instances, each one new
object, so the package's reachable state is N objects plus a handful). Each size is timed over ``--passes``
passes; the table gives the median pass in milliseconds and the objects walked per second.

    python benchmarks/bench_attribution.py                    # 100k and 1M objects, 5 passes each
    python benchmarks/bench_attribution.py --sizes 100000 --passes 9

Both walkers are timed (the C extension, when built, and the pure-Python fallback; they report the same bytes).
Target: a pass over 100k objects in at most 50 ms with the walker the plugin uses (the plugin runs passes between
tests, within its overhead budget). Exit status 1 when its 100k median misses the target (``--no-check`` to
report only).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import statistics
import sys
import tempfile
import time
from types import ModuleType

from pytest_memtrack.tracking import attribution
from pytest_memtrack.tracking.attribution import measure_packages

PACKAGE = "memtrack_bench_synthetic"
TARGET_MS_AT_100K = 50.0

_SOURCE = '''\
"""Synthetic package for bench_attribution: its module state is whatever the benchmark puts in STATE."""

STATE = []


class Thing:
    def __init__(self, value):
        self.value = value
'''


def make_package(root: str) -> ModuleType:
    package_dir = os.path.join(root, PACKAGE)
    os.makedirs(package_dir)
    with open(os.path.join(package_dir, "__init__.py"), "w") as f:
        f.write(_SOURCE)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    return importlib.import_module(PACKAGE)


def fill(module: ModuleType, count: int) -> None:
    """Put ``count`` new small objects in the module's state (each adds exactly one reachable object)."""
    thing = module.Thing
    state = module.STATE
    state.clear()
    for i in range(count):
        kind = i % 5
        if kind == 0:
            state.append({"k": 1})            # a dict whose key and value are shared (interned, cached int)
        elif kind == 1:
            state.append([1, 2])              # a list of cached ints
        elif kind == 2:
            state.append(f"s{i}")             # a fresh string
        elif kind == 3:
            state.append(i + 10**9)           # a fresh (uncached) int
        else:
            state.append(thing(1))            # an instance (3.11+: inline values, no separate __dict__)


def reachable(module: ModuleType) -> int:
    """Objects reachable from the module's globals, counted independently of attribution.py (a plain BFS)."""
    seen = {id(module.__dict__)}
    frontier = [module.__dict__]
    count = 1
    while frontier:
        nxt = []
        for ref in gc.get_referents(*frontier):
            if id(ref) in seen or isinstance(ref, ModuleType):
                continue
            if isinstance(ref, type) and getattr(ref, "__module__", None) != PACKAGE:
                continue
            seen.add(id(ref))
            nxt.append(ref)
        count += len(nxt)
        frontier = nxt
    return count


def time_passes(passes: int, walker_type: type) -> list[float]:
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        measure_packages([PACKAGE], walker_type)
        times.append(time.perf_counter() - started)
    return times


#: Real libraries for the whole-interpreter pass: the standard library's larger packages and the test tooling.
REAL_IMPORTS = ("asyncio", "email.message", "http.server", "json", "logging", "unittest", "xml.etree.ElementTree",
                "decimal", "pytest", "jinja2", "psutil", "hypothesis")


def whole_interpreter(walkers: dict[str, type], passes: int) -> None:
    """A pass over every package loaded in this process (what ``--memtrack-measure-all`` walks), after importing
    ``REAL_IMPORTS``: real module state (functions, classes, caches) rather than a synthetic list."""
    for name in REAL_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    packages = sorted(attribution.modules_by_package())
    print(f"\nevery loaded package ({len(packages)}, the standard library and test tooling included):")
    print(f"{'walker':>7} {'MiB':>8} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, walker_type in walkers.items():
        nbytes = sum(measure_packages(packages, walker_type).values())
        times = []
        for _ in range(passes):
            started = time.perf_counter()
            measure_packages(packages, walker_type)
            times.append(time.perf_counter() - started)
        print(f"{name:>7} {nbytes / 2**20:>8.1f} {statistics.median(times) * 1000:>10.1f} "
              f"{min(times) * 1000:>8.1f} {max(times) * 1000:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="numbers of live objects to keep (default: 100000 1000000)")
    parser.add_argument("--passes", type=int, default=5, help="timed passes per size (default 5)")
    parser.add_argument("--no-check", action="store_true", help="do not fail when the 100k target is missed")
    parser.add_argument("--synthetic-only", action="store_true",
                        help="skip the pass over every package loaded in the process")
    args = parser.parse_args(argv)
    if args.passes < 1 or any(size < 1 for size in args.sizes):
        parser.error("--passes and --sizes must be positive")

    walkers = {"python": attribution.PyWalker}
    if attribution.WALKER_IMPLEMENTATION == "c":
        walkers = {"c": attribution.Walker, **walkers}
    print(f"Python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs; "
          f"median of {args.passes} passes of measure_packages([{PACKAGE!r}]); "
          f"the plugin uses the {attribution.WALKER_IMPLEMENTATION} walker")
    print(f"{'walker':>7} {'objects':>10} {'reachable':>10} {'MiB':>8} {'median ms':>10} {'min ms':>8} "
          f"{'max ms':>8} {'objects/s':>12}")
    medians: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="memtrack-bench-") as root:
        module = make_package(root)
        try:
            for size in args.sizes:
                fill(module, size)
                walked = reachable(module)
                figures = set()
                for name, walker_type in walkers.items():
                    nbytes = measure_packages([PACKAGE], walker_type)[PACKAGE]  # warm-up, and the figure
                    figures.add(nbytes)
                    times = time_passes(args.passes, walker_type)
                    median = statistics.median(times)
                    if name == attribution.WALKER_IMPLEMENTATION:
                        medians[size] = median * 1000
                    print(f"{name:>7} {size:>10,} {walked:>10,} {nbytes / 2**20:>8.1f} {median * 1000:>10.1f} "
                          f"{min(times) * 1000:>8.1f} {max(times) * 1000:>8.1f} {walked / median:>12,.0f}")
                if len(figures) != 1:
                    print(f"ERROR: the walkers disagree on {size:,} objects: {sorted(figures)} bytes")
                    return 1
        finally:
            module.STATE.clear()
            sys.path.remove(root)
            sys.modules.pop(PACKAGE, None)

    if not args.synthetic_only:
        whole_interpreter(walkers, args.passes)

    if 100_000 in medians:
        ok = medians[100_000] <= TARGET_MS_AT_100K
        print(f"target: <= {TARGET_MS_AT_100K:g} ms at 100k objects: {'met' if ok else 'MISSED'} "
              f"({medians[100_000]:.1f} ms)")
        if not ok and not args.no_check:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
