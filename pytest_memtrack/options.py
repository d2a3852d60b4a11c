"""Every command-line option and ini key of the plugin, with its help text: the core ones and the features'
(HTML report, server, history).

Declared here, apart from the features themselves, so that ``pytest_addoption`` costs nothing on a run without
``--memtrack``: importing the features (http.server, sqlite3, jinja2 templates, the comparison grammar) took
about 45 ms of every pytest start-up. The features import these help texts from here. Every option defaults to
``None`` and is resolved in ``settings`` (command line first, then ini).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

HTML_HELP = "write a self-contained HTML report (inline CSS and SVG charts, no network) to this path"

TOKEN_ENV = "MEMTRACK_TOKEN"
SERVE_HELP = ("serve the memory API and a live dashboard while the tests run, on [HOST:]PORT (port 0 picks a free "
              "port; host defaults to 127.0.0.1; another host needs a token)")
TOKEN_HELP = ("a token that every request must then carry, as 'Authorization: Bearer TOKEN' (in a browser: "
              f"/?token=TOKEN); default: env {TOKEN_ENV}; required when serving on a non-loopback host")

DEFAULT_STORE = os.path.join(".memtrack", "history.sqlite")
RULE_HELP = (
    "fail the session when a figure grew beyond a tolerance against the baseline: [test:|package:]FIGURE:TOLERANCE, "
    "FIGURE one of footprint, current, peak (per package), total (session), rss_delta (per test), "
    "leak_score (per test and package), leaking (count of leaking tests); TOLERANCE a percentage (10%), "
    "a size (5MB, 512KB; a plain number is bytes) or a plain number for scores and counts (0.1). Repeatable: "
    "one rule each time"
)
STORE_HELP = (f"the run history store: an SQLite file (default: {DEFAULT_STORE} under the rootdir), or a "
              "postgresql://USER@HOST:PORT/DATABASE URL shared by many machines (pytest-memtrack[postgresql])")
SAVE_HELP = "save this run in the history store, optionally under a name: --memtrack-save or --memtrack-save=NAME"
COMPARE_HELP = ("compare this run with a stored run, by id or name (default: the last run of the same OS, Python "
                "version and architecture): --memtrack-compare or --memtrack-compare=NAME|ID")
COMPARE_FAIL_HELP = (RULE_HELP + ", e.g. --memtrack-compare-fail=footprint:10% --memtrack-compare-fail=leaking:0; "
                     "implies --memtrack-compare")
COMPARE_FAIL_INI_HELP = (RULE_HELP.removesuffix("Repeatable: one rule each time") + "One rule a line, e.g. "
                         "footprint:10% and leaking:0 on two lines; implies --memtrack-compare")


class HelpFormatter(argparse.HelpFormatter):
    """``pytest-memtrack``'s help: descriptions wrapped to the terminal as usual; an epilog that starts with
    ``examples:`` kept line for line as written, so that each example can be copied and works as typed."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


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


MAX_LEAK_SCORE_HELP = ("fail a test whose leak score (0..1) exceeds this limit; applies to tests without their own "
                       "max_leak_score marker")

CORE_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    # (name, kind, metavar, help); kind "bool" is a flag on the command line and a bool ini value. Metavars name
    # what a value is, the same word for the same kind everywhere: PATH, SCORE, N, SECONDS, SHARE, SIZE.
    ("memtrack", "bool", "", "track memory per package and per test, hunt leaks, write reports"),
    ("memtrack_json", "string", "PATH", "write the JSON report to this path"),
    ("memtrack_max_leak_score", "string", "SCORE", MAX_LEAK_SCORE_HELP),
    ("memtrack_leak_threshold", "string", "SCORE",
     "leak score from which a package counts as leaking in the report (default 0.1)"),
    ("memtrack_max_runs", "string", "N",
     "most executions of a hunted test's call phase, warm-ups included (default 10)"),
    ("memtrack_warmup_runs", "string", "N", "executions of a hunted test discarded before measuring (default 2)"),
    ("memtrack_history_size", "string", "N", "measurements kept per package (default 100)"),
    ("memtrack_check_interval", "string", "SECONDS",
     "seconds between per-package memory passes (default: adaptive, within the overhead budget)"),
    ("memtrack_overhead_budget", "string", "SHARE",
     "share of wall time the per-package passes may use, e.g. 0.02 or 2%% (default 2%%)"),
    ("memtrack_leak_reference", "string", "SIZE",
     "growth per run that scores a test's leak magnitude 1.0, e.g. 64KB (default 64KB)"),
    ("memtrack_native_floor", "string", "SIZE",
     "native growth per run, unexplained by traced memory, that counts as a native leak (default 16KB with glibc's "
     "malloc reading, 256KB with RSS)"),
    ("memtrack_hunt_budget", "string", "SECONDS",
     "seconds of wall time the repeats of one hunted test may take; when they run out the verdict uses the runs "
     "done so far, and says so (default 60, 0: no limit)"),
    ("memtrack_memory_budget", "string", "SIZE",
     "the process's memory limit for forecasts of when memory runs out, e.g. 2GB (default: the process's RSS plus "
     "the system's available memory)"),
    ("memtrack_auto_unload", "bool", "", "unload lazily loaded packages left idle when system memory pressure is "
                                         "high (off by default)"),
    ("memtrack_unload_idle", "string", "SECONDS",
     "seconds a lazily loaded package must be idle before --memtrack-auto-unload may unload it (default 300)"),
    ("memtrack_trace_all", "bool", "", "keep tracemalloc on for the whole session (precise, slower)"),
    ("memtrack_trace_hunts", "bool", "", "hunt every hunted test under tracemalloc from its reported run on, "
                                         "without the untraced screen that hunts only the tests that kept "
                                         "something (slower)"),
    ("memtrack_measure_all", "bool", "", "also track the standard library and the test tooling (pytest, its plugins) "
                                         "package by package (slower passes)"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("memtrack", "memory-leak tracking (pytest-memtrack)")
    for name, kind, metavar, help_text in CORE_OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=name, help=help_text)
            parser.addini(name, help_text, type="bool", default=None)
        else:
            group.addoption(flag, action="store", default=None, dest=name, metavar=metavar, help=help_text)
            parser.addini(name, help_text.replace("%%", "%"), default=None)
    add_feature_options(group, parser)


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

    group.addoption("--memtrack-store", dest="memtrack_store", default=None, metavar="PATH|URL", help=STORE_HELP)
    parser.addini("memtrack_store", STORE_HELP, default=None)
    group.addoption("--memtrack-save", dest="memtrack_save", nargs="?", const="", default=None, metavar="NAME",
                    help=SAVE_HELP)
    group.addoption("--memtrack-compare", dest="memtrack_compare", nargs="?", const="", default=None,
                    metavar="NAME|ID", help=COMPARE_HELP)
    group.addoption("--memtrack-compare-fail", dest="memtrack_compare_fail", action="append", type=_rule_option,
                    default=None, metavar="RULE", help=escape(COMPARE_FAIL_HELP))
    parser.addini("memtrack_compare_fail", COMPARE_FAIL_INI_HELP, type="linelist", default=None)
