"""Wall-time overhead of pytest-memtrack on real test suites, against plain pytest and pytest-memray, in one run.

What it does, needing only Python and the network to PyPI:

1. Downloads each suite's sdist once (``pip download --no-deps --no-binary :all: NAME==VERSION``) into a cache
   outside the repository (``--cache``, default ``~/.cache/pytest-memtrack-bench``), extracts it there, and builds
   one venv per suite there with pytest, pytest-memray, the suite's own test dependencies and the library itself
   (from its sdist). At every run, pytest-memtrack is installed into each venv from this repository afresh (a
   regular, non-editable install: a snapshot of the tree, so concurrent edits cannot change a run halfway).
2. Runs every suite once untimed without and once with ``--memtrack`` (file cache, bytecode; pytest-memtrack's
   modules are byte-compiled at install), then ``--rounds`` rounds; in each round every suite runs
   each configuration once, in an order rotated per round, so every ratio pairs runs made close together:

   * ``plain``:    ``pytest -p no:memtrack`` (pytest-memray installed, not enabled)
   * ``memtrack``: ``pytest --memtrack``
   * ``memray``:   ``pytest --memray -p no:memtrack``
   * ``hunt``:     ``pytest --memtrack --memtrack-max-leak-score=0.1`` (every test hunted), in the first
     ``--hunt-rounds`` rounds only (default 1; 0: never)

   all with ``-p no:cacheprovider -q --junitxml=...`` from the suite's folder.
3. Prints, per suite, the median wall time of plain pytest and each configuration's median ratio to it (each
   ratio from runs of the same round), the hunting cost per test, the outcome changes against plain pytest (per
   test, from the JUnit XML), and whether the targets hold: ``--memtrack`` <= ``--target`` (1.10x) on every suite,
   hunting every test <= ``--hunt-target`` (5x) on jinja2 and marshmallow.

    python benchmarks/bench_overhead.py                           # 3 rounds, hunting in round 1 (~5 min, 2 cores)
    python benchmarks/bench_overhead.py --rounds 5 --hunt-rounds 2
    python benchmarks/bench_overhead.py --suites jinja2 marshmallow --hunt-rounds 0

Exit status: 0 when no outcome changed under ``--memtrack`` and every target holds, 1 otherwise, 2 on a setup
failure.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_ARGS = ["-p", "no:cacheprovider", "-q"]
CONFIGS: dict[str, list[str]] = {
    "plain": ["-p", "no:memtrack"],
    "memtrack": ["--memtrack"],
    "memray": ["--memray", "-p", "no:memtrack"],
    "hunt": ["--memtrack", "--memtrack-max-leak-score=0.1"],
}
HUNT_TARGET_SUITES = ("jinja2", "marshmallow")


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    test_deps: tuple[str, ...] = ()
    tests: str = "tests"


SUITES = {suite.name: suite for suite in (
    Suite("boltons", "26.2.0"),
    Suite("cachetools", "8.0.2"),
    Suite("jinja2", "3.1.6", ("trio",)),
    Suite("marshmallow", "4.4.0", ("simplejson",)),
)}


class SetupError(Exception):
    pass


@dataclass
class Run:
    suite: str
    config: str
    round: int
    wall: float
    summary: str
    cpu: float = 0.0  # user + system seconds of the run's processes: less moved by other load than wall time
    outcomes: dict[str, str] = field(default_factory=dict)


def sh(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def source_dir(cache: str, suite: Suite) -> str:
    """The extracted sdist of ``suite`` in the cache, downloaded the first time."""
    folder = os.path.join(cache, "src")
    found = [path for path in glob.glob(os.path.join(folder, "*")) if os.path.isdir(path)
             and os.path.basename(path).lower().replace("_", "-") == f"{suite.name}-{suite.version}"]
    if found:
        return found[0]
    download = os.path.join(cache, "sdists")
    archives = glob.glob(os.path.join(download, f"{suite.name}-{suite.version}.tar.gz"))
    if not archives:
        print(f"downloading {suite.name}=={suite.version}", flush=True)
        sh([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", download,
            f"{suite.name}=={suite.version}"])
        archives = glob.glob(os.path.join(download, f"{suite.name}-{suite.version}.tar.gz"))
    if len(archives) != 1:
        raise SetupError(f"expected one {suite.name} sdist in {download}, found {os.listdir(download)}")
    with tarfile.open(archives[0]) as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(folder, filter="data")
        else:
            tar.extractall(folder)
    path = os.path.join(folder, os.path.basename(archives[0])[: -len(".tar.gz")])
    if not os.path.isdir(os.path.join(path, suite.tests)):
        raise SetupError(f"{path} has no {suite.tests}/ directory")
    return path


def venv_for(cache: str, suite: Suite, source: str, reinstall: bool) -> str:
    venv = os.path.join(cache, "venvs", f"{suite.name}-{suite.version}")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"creating venv {venv}", flush=True)
        sh([sys.executable, "-m", "venv", venv])
        sh([python, "-m", "pip", "install", "-q", "pytest", "pytest-memray", *suite.test_deps, source, REPO])
    if reinstall or subprocess.run([python, "-c", "import pytest_memtrack"], capture_output=True).returncode:
        sh([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", REPO])
        sh([python, "-m", "pip", "install", "-q", REPO])  # its dependencies, where they are missing
        # Bytecode now, not in the first timed run that imports a module (the hunt's only load when hunting).
        sh([python, "-c", "import compileall, os, pytest_memtrack; "
                          "compileall.compile_dir(os.path.dirname(pytest_memtrack.__file__), quiet=1)"])
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


def run_suite(python: str, suite: Suite, source: str, logs: str, config: str, round_no: int,
              env: dict[str, str]) -> Run:
    junit = os.path.join(logs, f"{suite.name}-{config}-{round_no}.xml")
    log = os.path.join(logs, f"{suite.name}-{config}-{round_no}.txt")
    cmd = [python, "-m", "pytest", suite.tests, *BASE_ARGS, f"--junitxml={junit}", *CONFIGS[config]]
    started, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=source, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    with open(log) as f:
        lines = [line.strip() for line in f if line.strip()]
    summary = next((line for line in reversed(lines) if " in " in line and ("passed" in line or "failed" in line)),
                   lines[-1] if lines else "")
    outcomes = parse_junit(junit) if os.path.exists(junit) else {}
    if done.returncode not in (0, 1) or not outcomes:
        raise SetupError(f"{suite.name} {config} run {round_no} exited {done.returncode}; see {log}:\n"
                         + "\n".join(lines[-15:]))
    return Run(suite.name, config, round_no, wall, summary, outcomes=outcomes, cpu=cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=list(SUITES))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration (default 3)")
    parser.add_argument("--hunt-rounds", type=int, default=1, help="rounds that also hunt every test (default 1)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pytest-memtrack-bench"),
                        help="where sdists, their sources, venvs and logs are kept")
    parser.add_argument("--no-reinstall", action="store_true",
                        help="keep the pytest-memtrack already installed in the venvs")
    parser.add_argument("--target", type=float, default=1.10, help="largest --memtrack/plain ratio (1.10)")
    parser.add_argument("--hunt-target", type=float, default=5.0,
                        help="largest hunt/plain ratio on jinja2 and marshmallow (5)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 0 <= args.hunt_rounds <= args.rounds:
        parser.error("--rounds must be at least 1 and --hunt-rounds between 0 and --rounds")
    logs = os.path.join(args.cache, "logs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(logs, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTEST_ADDOPTS")}
    suites = [SUITES[name] for name in args.suites]
    runs: list[Run] = []
    try:
        setups = {}
        for suite in suites:
            source = source_dir(args.cache, suite)
            setups[suite.name] = (venv_for(args.cache, suite, source, not args.no_reinstall), source)
        python = setups[suites[0].name][0]
        versions = sh([python, "-c", "import sys, importlib.metadata as m; print(sys.version.split()[0], "
                       "*(f'{p}=={m.version(p)}' for p in ('pytest', 'pytest-memray', 'pytest-memtrack')))"]).stdout
        print(f"python {versions.strip()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; "
              f"logs in {logs}", flush=True)
        for suite in suites:
            python, source = setups[suite.name]
            for config in ("plain", "memtrack"):
                warm = run_suite(python, suite, source, logs, config, 0, env)
                print(f"warm-up {suite.name} {config} (untimed): {warm.summary}", flush=True)
        names = list(CONFIGS)
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(names)
            for suite in suites:
                for config in names[shift:] + names[:shift]:
                    if config == "hunt" and round_no > args.hunt_rounds:
                        continue
                    python, source = setups[suite.name]
                    run = run_suite(python, suite, source, logs, config, round_no, env)
                    runs.append(run)
                    print(f"  round {round_no} {suite.name:<12} {config:<9} {run.wall:7.2f} s  {run.summary}",
                          flush=True)
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return report(runs, suites, args)


def _ratio(by: dict[tuple[str, str, int], Run], suite: str, config: str,
           measure: str = "wall") -> tuple[float, list[float]] | None:
    paired = [getattr(run, measure) / getattr(by[suite, "plain", run.round], measure) for key, run in by.items()
              if key[0] == suite and key[1] == config]
    return (statistics.median(paired), paired) if paired else None


def report(runs: list[Run], suites: list[Suite], args: argparse.Namespace) -> int:
    by = {(r.suite, r.config, r.round): r for r in runs}
    print("\n| suite | tests | plain | `--memtrack` | `--memray` | hunting every test (`--memtrack-max-leak-score=0.1`) |")
    print("|---|---|---|---|---|---|")
    failed = False
    for suite in suites:
        plain = [r for r in runs if r.suite == suite.name and r.config == "plain"]
        tests = len(plain[0].outcomes)
        cells = []
        for config in ("memtrack", "memray", "hunt"):
            found = _ratio(by, suite.name, config)
            if found is None:
                cells.append("not run")
                continue
            median, paired = found
            cell = f"{median:.2f}x" + (f" ({' '.join(f'{p:.2f}' for p in paired)})" if len(paired) > 1 else "")
            if config == "hunt":
                extra = [(by[suite.name, "hunt", n].wall - by[suite.name, "memtrack", n].wall) / tests * 1000
                         for n in range(1, args.hunt_rounds + 1)]
                cell += f", {statistics.median(extra):.1f} ms per test"
            cells.append(cell)
        print(f"| {suite.name} {suite.version} | {tests} | {statistics.median(r.wall for r in plain):.2f} s | "
              + " | ".join(cells) + " |")
    print("\n(each ratio: median over rounds of the run / plain pytest's run of the same round; per-round ratios in "
          "parentheses)\n\nthe same ratios of CPU time (user + system; the targets are on wall time):")
    for suite in suites:
        cpu = [_ratio(by, suite.name, config, "cpu") for config in ("memtrack", "memray", "hunt")]
        print(f"  {suite.name:<12} " + "  ".join(f"{config} {found[0]:.2f}x" for config, found
                                                 in zip(("memtrack", "memray", "hunt"), cpu) if found))
    print("\noutcomes vs plain pytest of the same round (JUnit XML, per test):")
    for suite in suites:
        for config in ("memtrack", "memray", "hunt"):
            # Tests present in both runs only: marshmallow's ids carry the time of day, so each run names a few
            # tests of its own.
            changes = sorted({f"{test}: {base.outcomes[test]} -> {run.outcomes[test]}"
                              for (name, cfg, n), run in by.items() if name == suite.name and cfg == config
                              for base in [by[name, "plain", n]]
                              for test in base.outcomes.keys() & run.outcomes.keys()
                              if base.outcomes[test] != run.outcomes[test]})
            if (suite.name, config, 1) not in by:
                continue
            print(f"  {suite.name:<12} {config:<9} {'unchanged' if not changes else f'{len(changes)} changed'}")
            for change in changes[:10]:
                print(f"      {change}")
            failed = failed or (config == "memtrack" and bool(changes))
    print()
    for suite in suites:
        memtrack = _ratio(by, suite.name, "memtrack")
        if memtrack is not None:
            ok = memtrack[0] <= args.target
            failed = failed or not ok
            print(f"target --memtrack <= {args.target:g}x on {suite.name}: {'met' if ok else 'MISSED'} "
                  f"({memtrack[0]:.2f}x)")
        hunt = _ratio(by, suite.name, "hunt")
        if hunt is not None and suite.name in HUNT_TARGET_SUITES:
            ok = hunt[0] <= args.hunt_target
            failed = failed or not ok
            print(f"target hunting every test <= {args.hunt_target:g}x on {suite.name}: {'met' if ok else 'MISSED'} "
                  f"({hunt[0]:.2f}x)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
