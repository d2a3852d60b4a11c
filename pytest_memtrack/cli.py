"""``pytest-memtrack``: offline commands over saved reports and the run history.

Each feature's ``cli`` module contributes its sub-commands through an ``add_cli(subparsers)`` function that
registers an argparse sub-parser whose ``func(args) -> int`` does the work; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from pytest_memtrack.errors import CliError
from pytest_memtrack.options import HelpFormatter

#: Modules that contribute sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "pytest_memtrack.report.cli",
    "pytest_memtrack.report.merge_cli",
    "pytest_memtrack.server.cli",
    "pytest_memtrack.history.cli",
)


#: The top-level help's examples, one workflow: each line works as typed, in this order, in a project with tests
#: (tests/test_cli_help.py runs them).
EXAMPLES = """\
examples:
  # run the tests with tracking on, write the report, save the run as "main"
  pytest --memtrack --memtrack-json=reports/memtrack.json --memtrack-save=main
  # render the report as one self-contained HTML page
  pytest-memtrack html reports/memtrack.json -o reports/memtrack.html
  # serve it over the memory API, with a dashboard at http://127.0.0.1:8000/
  pytest-memtrack serve reports/memtrack.json --port 8000
  # the saved runs; a saved run against a report (exit 1 on a regression)
  pytest-memtrack history
  pytest-memtrack compare main reports/memtrack.json --fail footprint:10%

Each command has its own help and examples: pytest-memtrack COMMAND --help.
"""


def version() -> str:
    """The installed distribution's version (the package's own when it runs from a source tree)."""
    try:
        return importlib.metadata.version("pytest-memtrack")
    except importlib.metadata.PackageNotFoundError:
        from pytest_memtrack import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-memtrack",
                                     description="Offline commands over saved memtrack reports and the run history.",
                                     epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
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
