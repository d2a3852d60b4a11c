"""``pytest-memtrack html REPORT.json``: a saved JSON report rendered as the self-contained HTML page."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_memtrack.errors import CliError
from pytest_memtrack.options import HelpFormatter
from pytest_memtrack.report.html import write_html
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.settings import parse_writable_path


def html_command(args: Any) -> int:
    report = load_report(args.report)
    output = args.output or os.path.splitext(args.report)[0] + ".html"
    try:
        output = parse_writable_path(output, "-o/--output")
    except pytest.UsageError as exc:
        raise CliError(str(exc).rstrip(".") + ".") from None
    write_html(report, output)
    print(f"wrote {output}")
    return 0


EXAMPLES = """\
examples:
  pytest-memtrack html reports/memtrack.json -o reports/memtrack.html
"""


def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser("html", help="render a saved JSON report as a self-contained HTML page",
                                   description="Render a JSON report written by --memtrack-json as one "
                                               "self-contained HTML page (no network needed to view it).",
                                   epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("report", metavar="REPORT.json", help="the JSON report to render")
    parser.add_argument("-o", "--output", metavar="PATH", default=None,
                        help="where to write the page (default: REPORT with an .html suffix)")
    parser.set_defaults(func=html_command)
