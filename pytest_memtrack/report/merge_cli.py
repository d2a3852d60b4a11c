"""``pytest-memtrack merge A.json B.json ... -o ALL.json``: the shards' reports as one (rules in ``report.merge``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

from pytest_memtrack.errors import CliError
from pytest_memtrack.options import HelpFormatter
from pytest_memtrack.report.json_report import write_json
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.report.merge import Shard, merge_reports
from pytest_memtrack.settings import parse_writable_path
from pytest_memtrack.units import plural

EXAMPLES = """\
examples:
  # each CI shard ran: pytest --memtrack --memtrack-json=shard-N.json ...
  pytest-memtrack merge shard-1.json shard-2.json -o all.json
"""


def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "merge", help="merge the JSON reports of CI shards into one report",
        description="Merge the JSON reports of the shards of one test run (each written by pytest --memtrack "
                    "--memtrack-json on its own machine) into one report: every test once, package figures "
                    "combined as for xdist workers, leaks and suggestions recomputed. A test in two shards is an "
                    "error. `html`, `serve`, `compare` and `history save` read the result.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("reports", metavar="REPORT.json", nargs="+", help="the shards' JSON reports")
    parser.add_argument("-o", "--output", metavar="PATH", required=True, help="where to write the merged report")
    parser.set_defaults(func=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    try:
        output = parse_writable_path(args.output, "-o/--output")
    except pytest.UsageError as exc:
        raise CliError(str(exc).rstrip(".") + ".") from None
    shards = [Shard(path, load_report(path)) for path in args.reports]
    merged = merge_reports(shards, ["pytest-memtrack", "merge", *args.reports, "-o", args.output])
    try:
        write_json(merged, output)
    except OSError as exc:
        raise CliError(f"cannot write {output!r}: {exc.strerror or exc}.") from None
    run = merged["run"]
    leaking = sum(1 for test in merged["tests"] if test.get("leaking"))
    print(f"merged {plural(len(shards), 'shard')}: {plural(len(merged['tests']), 'test')} ({leaking} leaking), "
          f"{plural(len(merged['packages']), 'package')} ({merged['leaks']['total_leaks']} leaking) into {output}")
    if run["interrupted"]:
        print("memtrack: a shard was interrupted: the merged report is marked interrupted.", file=sys.stderr)
    return 0
