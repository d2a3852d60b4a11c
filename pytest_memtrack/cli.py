"""``pytest-memtrack``: offline commands over saved reports and the run history.

Each feature module contributes its sub-command through an ``add_cli(subparsers)`` function that registers an
argparse sub-parser whose ``func(args) -> int`` does the work; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that contribute sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "pytest_memtrack.report.html",
    "pytest_memtrack.server.transport",
    "pytest_memtrack.history.plugin",
)


class CliError(Exception):
    """A user mistake on the command line: printed as one sentence, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-memtrack",
                                     description="Offline commands over saved memtrack reports and the run history.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a feature module not present in this build
            continue
        add_cli = getattr(module, "add_cli", None)
        if add_cli is not None:
            add_cli(subparsers)
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
