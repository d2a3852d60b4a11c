"""``pytest-memtrack``: offline commands over saved reports and the run history.

Each feature's ``cli`` module contributes its sub-commands through an ``add_cli(subparsers)`` function that
registers an argparse sub-parser whose ``func(args) -> int`` does the work; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_memtrack.errors import CliError

#: Modules that contribute sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "pytest_memtrack.report.cli",
    "pytest_memtrack.report.merge_cli",
    "pytest_memtrack.server.cli",
    "pytest_memtrack.history.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-memtrack",
                                     description="Offline commands over saved memtrack reports and the run history.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"pytest-memtrack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
