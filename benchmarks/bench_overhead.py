"""Wall-time overhead of ``pytest --memtrack`` on a real third-party test suite (boltons), against plain pytest.

What it does, needing only Python and the network to PyPI:

1. Fetches boltons' sdist (``pip download --no-deps --no-binary :all:``; the latest unless ``--boltons-version``)
   into a temporary directory and extracts it (or uses ``--suite-dir``, a directory with a ``tests/`` folder).
2. Creates a temporary venv with pytest, pytest-memray and pytest-memtrack installed from this repository
   (a regular, non-editable install: a snapshot of the tree, so concurrent edits cannot change a run halfway),
   or reuses the one named by ``--venv`` (created there and kept when it does not exist yet).
3. Runs the suite once untimed (warms the file cache, writes bytecode), then ``--rounds`` rounds of paired runs,
   each round in a rotated order of the four configurations:

   * ``plain``:   ``pytest`` (the two plugins installed, not enabled)
   * ``memtrack``: ``pytest --memtrack``
   * ``memray``:  ``pytest --memray``
   * ``hunt``:    ``pytest --memtrack --memtrack-max-leak-score=1.0`` (every test hunted, a limit that never fails)

   all with ``-p no:cacheprovider -q --junitxml=...``, timing the wall time of each subprocess. Hunting repeats
   every test up to 10 times with a full ``gc.collect()`` and a tracemalloc snapshot per run, so a hunted run of
   boltons takes minutes: ``hunt`` runs only in the first ``--hunt-rounds`` rounds (default 1).
4. Prints the median wall time of each configuration, its ratio to plain pytest (median and per round, paired),
   the per-test hunting cost ``(hunt - memtrack) / tests``, and compares every test's outcome (from the JUnit XML)
   with the plain run of the same round.

    python benchmarks/bench_overhead.py                      # 3 rounds, everything in a temp dir, removed after
    python benchmarks/bench_overhead.py --rounds 5 --keep    # keep the temp dir (venv + suite) and print its path
    python benchmarks/bench_overhead.py --venv /tmp/mt-venv --suite-dir /tmp/mt-suite/boltons-26.2.0
    python benchmarks/bench_overhead.py --hunt-rounds 0       # skip hunting (about a minute in all)

Exit status: 0 when no outcome changed under ``--memtrack`` and ``--memtrack`` stays within the target
(``--target``, default 1.15x plain); 1 otherwise; 2 on a setup failure.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_ARGS = ["-p", "no:cacheprovider", "-q"]
CONFIGS: dict[str, list[str]] = {
    "plain": [],
    "memtrack": ["--memtrack"],
    "memray": ["--memray"],
    "hunt": ["--memtrack", "--memtrack-max-leak-score=1.0"],
}


class SetupError(Exception):
    pass


@dataclass
class Run:
    config: str
    round: int
    wall: float
    returncode: int
    summary: str
    outcomes: dict[str, str] = field(default_factory=dict)


def sh(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def fetch_suite(workdir: str, version: str | None) -> str:
    """Download and extract boltons' sdist; return the extracted directory (it holds ``tests/``)."""
    download = os.path.join(workdir, "download")
    spec = f"boltons=={version}" if version else "boltons"
    sh([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", download, spec])
    archives = glob.glob(os.path.join(download, "boltons-*.tar.gz"))
    if len(archives) != 1:
        raise SetupError(f"expected one boltons sdist in {download}, found {os.listdir(download)}")
    with tarfile.open(archives[0]) as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(workdir, filter="data")
        else:
            tar.extractall(workdir)
    suite = os.path.join(workdir, os.path.basename(archives[0])[: -len(".tar.gz")])
    if not os.path.isdir(os.path.join(suite, "tests")):
        raise SetupError(f"{suite} has no tests/ directory")
    return suite


def venv_python(venv: str) -> str:
    return os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python")


def make_venv(venv: str) -> str:
    python = venv_python(venv)
    if not os.path.exists(python):
        print(f"creating venv {venv}", flush=True)
        sh([sys.executable, "-m", "venv", venv])
    probe = subprocess.run([python, "-c", "import pytest, pytest_memray, pytest_memtrack"], capture_output=True)
    if probe.returncode != 0:
        print("installing pytest, pytest-memray and pytest-memtrack (from this repository)", flush=True)
        sh([python, "-m", "pip", "install", "-q", "pytest", "pytest-memray", REPO])
    return python


def parse_junit(path: str) -> dict[str, str]:
    """Per-test outcome (passed, failed, error, skipped) from a JUnit XML file."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                break
        if key in outcomes:  # the same test reported twice (a teardown error): keep the worse outcome
            outcome = outcomes[key] if outcomes[key] != "passed" else outcome
        outcomes[key] = outcome
    return outcomes


def run_suite(python: str, suite: str, workdir: str, config: str, round_no: int, env: dict[str, str]) -> Run:
    junit = os.path.join(workdir, f"junit-{config}-{round_no}.xml")
    log = os.path.join(workdir, f"log-{config}-{round_no}.txt")
    cmd = [python, "-m", "pytest", "tests", *BASE_ARGS, f"--junitxml={junit}", *CONFIGS[config]]
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=suite, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    with open(log) as f:
        lines = [line.strip() for line in f if line.strip()]
    summary = next((line for line in reversed(lines) if " in " in line and ("passed" in line or "failed" in line)),
                   lines[-1] if lines else "")
    outcomes = parse_junit(junit) if os.path.exists(junit) else {}
    if done.returncode not in (0, 1) or not outcomes:
        raise SetupError(f"{config} run {round_no} exited {done.returncode}; see {log}:\n" + "\n".join(lines[-15:]))
    return Run(config, round_no, wall, done.returncode, summary, outcomes)


def compare(base: dict[str, str], other: dict[str, str]) -> list[str]:
    changes = [f"{test}: {base.get(test, 'absent')} -> {other.get(test, 'absent')}"
               for test in sorted(base.keys() | other.keys()) if base.get(test) != other.get(test)]
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four configurations (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (venv, suite, logs)")
    parser.add_argument("--venv", help="venv to reuse (created and kept when it does not exist)")
    parser.add_argument("--suite-dir", help="an extracted boltons sdist (a directory with tests/) instead of fetching")
    parser.add_argument("--boltons-version", help="boltons version to fetch (default: the latest)")
    parser.add_argument("--hunt-rounds", type=int, default=1,
                        help="rounds that include the (slow) hunting configuration (default 1; 0: never)")
    parser.add_argument("--target", type=float, default=1.15, help="largest acceptable memtrack/plain ratio (1.15)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.hunt_rounds < 0:
        parser.error("--rounds must be at least 1 and --hunt-rounds at least 0")

    workdir = tempfile.mkdtemp(prefix="memtrack-overhead-")
    try:
        try:
            python = make_venv(os.path.abspath(args.venv) if args.venv else os.path.join(workdir, "venv"))
            suite = os.path.abspath(args.suite_dir) if args.suite_dir else fetch_suite(workdir, args.boltons_version)
            if not os.path.isdir(os.path.join(suite, "tests")):
                raise SetupError(f"{suite} has no tests/ directory")
            versions = sh([python, "-c", "import sys, importlib.metadata as m; print(sys.version.split()[0], "
                           "*(f'{p}=={m.version(p)}' for p in ('pytest', 'pytest-memray', 'pytest-memtrack')))"]).stdout
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTEST_ADDOPTS")}
            print(f"suite: {suite}\npython {versions.strip()}; {os.cpu_count()} CPUs", flush=True)
            warm = run_suite(python, suite, workdir, "plain", 0, env)
            print(f"warm-up (untimed): {warm.summary}", flush=True)
            runs: list[Run] = []
            names = list(CONFIGS)
            for round_no in range(1, args.rounds + 1):
                shift = (round_no - 1) % len(names)
                for config in names[shift:] + names[:shift]:
                    if config == "hunt" and round_no > args.hunt_rounds:
                        continue
                    run = run_suite(python, suite, workdir, config, round_no, env)
                    runs.append(run)
                    print(f"  round {round_no} {config:<9} {run.wall:7.2f} s  {run.summary}", flush=True)
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
        return report(runs, args.rounds, args.target)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(runs: list[Run], rounds: int, target: float) -> int:
    by = {(r.config, r.round): r for r in runs}
    done = {c: [n for n in range(1, rounds + 1) if (c, n) in by] for c in CONFIGS}
    configs = [c for c in CONFIGS if done[c]]
    medians = {c: statistics.median(by[c, n].wall for n in done[c]) for c in configs}
    print(f"\n{'config':<10} {'runs':>4} {'median s':>9} {'x plain':>8}   per-round ratios (paired with that round's plain run)")
    for config in configs:
        paired = [by[config, n].wall / by["plain", n].wall for n in done[config]]
        print(f"{config:<10} {len(done[config]):>4} {medians[config]:>9.2f} {medians[config] / medians['plain']:>8.2f}   "
              + " ".join(f"{p:.2f}" for p in paired))
    tests = len(by["plain", 1].outcomes)
    passed = sum(1 for o in by["plain", 1].outcomes.values() if o == "passed")
    if done["hunt"]:
        per_test = [(by["hunt", n].wall - by["memtrack", n].wall) / tests * 1000 for n in done["hunt"]]
        print(f"\nhunting cost: {statistics.median(per_test):.1f} ms per test ((hunt - memtrack) / {tests} tests, "
              f"{passed} passed in plain; per round: {', '.join(f'{p:.1f}' for p in per_test)})")

    failed = False
    print("\noutcomes vs plain pytest of the same round (JUnit XML, per test):")
    for config in configs:
        if config == "plain":
            continue
        changes = sorted({c for n in done[config] for c in compare(by["plain", n].outcomes, by[config, n].outcomes)})
        print(f"  {config:<9} {'unchanged' if not changes else f'{len(changes)} CHANGED'}")
        for change in changes[:10]:
            print(f"      {change}")
        if config == "memtrack" and changes:
            failed = True
    ratio = medians["memtrack"] / medians["plain"]
    verdict = "met" if ratio <= target else "MISSED"
    print(f"\ntarget: --memtrack <= {target:g}x plain pytest: {verdict} ({ratio:.2f}x)")
    return 1 if failed or ratio > target else 0


if __name__ == "__main__":
    sys.exit(main())
