"""``pytest-memtrack history`` and ``pytest-memtrack compare``: the run history and two runs side by side."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
from typing import Any

from pytest_memtrack.errors import CliError
from pytest_memtrack.history.backend import HistoryStore, describe, may_exist, open_store
from pytest_memtrack.history.compare import RuleError, compare_reports, parse_rule, render_summary
from pytest_memtrack.history.store import MAX_ID, StoreError, machine_key
from pytest_memtrack.options import DEFAULT_STORE, RULE_HELP, STORE_HELP, HelpFormatter, escape
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.units import plural, shown

HISTORY_EXAMPLES = """\
examples:
  pytest-memtrack history --limit 5
  pytest-memtrack history --json --store .memtrack/history.sqlite
  # save a report (e.g. one merged from CI shards) as one run named "nightly"
  pytest-memtrack history save reports/memtrack.json --name nightly
"""
COMPARE_EXAMPLES = """\
examples:
  # the run saved with --memtrack-save=main against a report written since
  pytest-memtrack compare main reports/memtrack.json
  # exit status 1 when a package's footprint grew by more than 10% or a test
  # leaks: one --fail for each rule
  pytest-memtrack compare main reports/memtrack.json --fail footprint:10% \\
      --fail leaking:0
"""


def add_cli(subparsers: Any) -> None:
    history = subparsers.add_parser(
        "history", help="list the runs in the history store, or save a JSON report in it",
        description="List the runs saved with --memtrack-save, newest first; `history save REPORT.json` saves a "
                    "report (e.g. one merged from CI shards) as a run.",
        epilog=HISTORY_EXAMPLES, formatter_class=HelpFormatter)
    history.add_argument("--store", default=DEFAULT_STORE, metavar="PATH|URL", help=STORE_HELP)
    history.add_argument("--limit", type=_positive_int, default=20, metavar="N",
                         help="show at most N runs (default 20)")
    history.add_argument("--json", action="store_true", help="print the runs as JSON")
    history.set_defaults(func=history_command)
    actions = history.add_subparsers(dest="action", metavar="ACTION")
    save = actions.add_parser("save", help="save a JSON report in the history store as one run",
                              description="Save a JSON report written by --memtrack-json or `pytest-memtrack merge` "
                                          "as one run, to compare and gate later runs against.")
    save.add_argument("report", metavar="REPORT.json", help="the JSON report to save")
    save.add_argument("--name", default=None, help="the run's name (compare with it by name)")
    save.add_argument("--commit", default=None, help="the commit the run tested (default: git rev-parse HEAD here)")
    save.add_argument("--store", dest="save_store", default=None, metavar="PATH|URL", help=STORE_HELP)
    save.set_defaults(func=save_command)

    compare = subparsers.add_parser(
        "compare", help="compare two stored runs or two JSON reports",
        description="Compare run B with baseline A. A and B are stored run ids or names, or JSON report files. "
                    "Exit status 1 when a --fail rule is broken.",
        epilog=COMPARE_EXAMPLES, formatter_class=HelpFormatter)
    compare.add_argument("baseline", metavar="A", help="the baseline: a run id, a run name or a JSON report file")
    compare.add_argument("current", metavar="B", help="the run to judge: a run id, a run name or a JSON report file")
    compare.add_argument("--store", default=DEFAULT_STORE, metavar="PATH|URL", help=STORE_HELP)
    compare.add_argument("--fail", action="append", default=[], metavar="RULE", help=escape(RULE_HELP))
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.set_defaults(func=compare_command)


def _positive_int(text: str) -> int:
    """``--limit``: a whole number from 1, in ASCII digits; one beyond any store's size means "all of them" (SQLite
    refuses a LIMIT beyond its 64-bit integer, and int() refuses 4,301 digits)."""
    digits = text.strip().removeprefix("+")
    significant = digits.lstrip("0")
    if not (digits.isascii() and digits.isdigit()) or not significant:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {shown(text)}")
    return MAX_ID if len(significant) > len(str(MAX_ID)) else min(int(significant), MAX_ID)


def _open(path: str) -> HistoryStore:
    """The store, opened read-only: the commands work on a store in a read-only directory and change nothing."""
    return open_store(path, readonly=True)


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def history_command(args: argparse.Namespace) -> int:
    try:
        with _open(args.store) as store:
            runs = store.runs(limit=args.limit)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps([r.as_dict() for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {describe(args.store)}")
        return 0
    rows = [("id", "time", "name", "commit", "machine", "tests", "leaking")]
    rows += [(str(r.id), _time(r.time), r.name or "", (r.commit or "")[:10], r.machine or "", str(r.tests),
              str(r.leaking)) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _load(ref: str, store_path: str, stores: dict[str, HistoryStore]) -> tuple[dict[str, Any], dict[str, Any]]:
    if os.path.isfile(ref) and not ref.isdigit():
        report = load_report(ref)
        run = report["run"]
        return report, {"id": None, "name": os.path.basename(ref), "time": run.get("finished"), "commit": None,
                        "machine": machine_key(run), "python": run.get("python")}
    if "store" not in stores:
        if not may_exist(store_path):
            raise CliError(f"{shown(ref)} is not a report file, and there is no history store at {store_path!r}.")
        stores["store"] = _open(store_path)
    store = stores["store"]
    info = store.find(ref)
    if info is None:
        raise CliError(f"no stored run has the id or name {shown(ref)} in {describe(store_path)!r}, and it is not a "
                       "report file.")
    return store.load_report(info.id), info.baseline()


def compare_command(args: argparse.Namespace) -> int:
    try:
        rules = [parse_rule(text) for text in args.fail]
    except RuleError as exc:
        raise CliError(f"--fail: {exc}") from None
    stores: dict[str, HistoryStore] = {}
    try:
        baseline, info = _load(args.baseline, args.store, stores)
        current, _ = _load(args.current, args.store, stores)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    finally:
        for store in stores.values():
            store.close()
    comparison = compare_reports(baseline, current, rules, info)
    data = comparison.as_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_summary(data, all_rows=True, width=shutil.get_terminal_size().columns))
    if comparison.regressions:
        print(f"{plural(len(comparison.regressions), 'figure')} regressed beyond the tolerance.", file=sys.stderr)
        return 1
    return 0


def save_command(args: argparse.Namespace) -> int:
    from pytest_memtrack.history.gate import git_commit

    store_path = args.save_store or args.store
    report = load_report(args.report)
    commit = args.commit if args.commit is not None else git_commit(os.getcwd())
    try:
        with open_store(store_path) as store:
            info = store.save(report, args.name or None, commit or None)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    name = f" {info.name!r}" if info.name else ""
    counts = f"{plural(info.tests, 'test')}, {plural(info.packages, 'package')}"
    print(f"saved run #{info.id}{name} ({counts}) to {describe(store_path)}")
    return 0
