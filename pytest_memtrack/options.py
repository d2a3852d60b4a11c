"""Command-line options and ini keys of the feature modules (HTML report, server, history).

Declared here, apart from the features themselves, so that ``pytest_addoption`` costs nothing on a run without
``--memtrack``: importing the features (http.server, sqlite3, jinja2 templates, the comparison grammar) took
about 45 ms of every pytest start-up. The features import these help texts from here.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

HTML_HELP = "write a self-contained HTML report (inline CSS and SVG charts, no network) to this path"

TOKEN_ENV = "MEMTRACK_TOKEN"
SERVE_HELP = ("serve the memory API and a live dashboard while the tests run, on [HOST:]PORT (port 0 picks a free "
              "port; host defaults to 127.0.0.1; another host needs a token)")
TOKEN_HELP = (f"token the POST endpoints require as 'Authorization: Bearer TOKEN' (default: env {TOKEN_ENV}); "
              "required when serving on a non-loopback host")

DEFAULT_STORE = os.path.join(".memtrack", "history.sqlite")
RULE_HELP = (
    "fail the session when a figure grew beyond a tolerance against the baseline: [test:|package:]FIGURE:TOLERANCE, "
    "FIGURE one of footprint, current, peak (per package), total (session), rss_delta (per test), "
    "leak_score (per test and package), leaking (count of leaking tests); TOLERANCE a percentage (10%), "
    "a size (5MB, 512KB, 100 bytes) or a plain number for scores and counts (0.1). Repeatable, e.g. "
    "footprint:10% leak_score:0.1 leaking:0"
)
STORE_HELP = f"the run history store, an SQLite file (default: {DEFAULT_STORE} under the rootdir)"
SAVE_HELP = "save this run in the history store, optionally under a name: --memtrack-save or --memtrack-save=NAME"
COMPARE_HELP = ("compare this run with a stored run, by id or name (default: the last run of the same OS, Python "
                "version and architecture): --memtrack-compare or --memtrack-compare=NAME|ID")
COMPARE_FAIL_HELP = RULE_HELP + "; implies --memtrack-compare"


def escape(help_text: str) -> str:
    """argparse %-formats option help: ``10%`` must be written ``10%%`` there (ini help is shown as is)."""
    return help_text.replace("%", "%%")


def _rule_option(text: str) -> Any:
    """argparse ``type=`` of --memtrack-compare-fail: a bad rule is a usage error before any test runs."""
    from pytest_memtrack.history.compare import RuleError, parse_rule

    try:
        return parse_rule(text)
    except RuleError as exc:
        raise pytest.UsageError(f"--memtrack-compare-fail: {exc}") from None


def add_feature_options(group: Any, parser: pytest.Parser) -> None:
    group.addoption("--memtrack-html", action="store", default=None, dest="memtrack_html", metavar="PATH",
                    help=HTML_HELP)
    parser.addini("memtrack_html", HTML_HELP, default=None)

    group.addoption("--memtrack-serve", action="store", default=None, dest="memtrack_serve",
                    metavar="[HOST:]PORT", help=SERVE_HELP)
    parser.addini("memtrack_serve", SERVE_HELP, default=None)
    # No ini twin for the token on purpose: a secret does not belong in a committed config file.
    group.addoption("--memtrack-serve-token", action="store", default=None, dest="memtrack_serve_token",
                    metavar="TOKEN", help=TOKEN_HELP)

    group.addoption("--memtrack-store", dest="memtrack_store", default=None, metavar="PATH", help=STORE_HELP)
    parser.addini("memtrack_store", STORE_HELP, default=None)
    group.addoption("--memtrack-save", dest="memtrack_save", nargs="?", const="", default=None, metavar="NAME",
                    help=SAVE_HELP)
    group.addoption("--memtrack-compare", dest="memtrack_compare", nargs="?", const="", default=None,
                    metavar="NAME|ID", help=COMPARE_HELP)
    group.addoption("--memtrack-compare-fail", dest="memtrack_compare_fail", action="append", type=_rule_option,
                    default=None, metavar="RULE", help=escape(COMPARE_FAIL_HELP))
    parser.addini("memtrack_compare_fail", COMPARE_FAIL_HELP + " (one rule a line)", type="linelist", default=None)
