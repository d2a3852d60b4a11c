"""pytest wiring of the report renderers that write files: the HTML page (``--memtrack-html``), the GitHub
Actions step summary (whenever ``GITHUB_STEP_SUMMARY`` is set) and, when pytest-html is installed, two columns in
its report (``html_columns``). The JSON report is written by the session."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_memtrack.report import github
from pytest_memtrack.report.atomic import describe_os_error
from pytest_memtrack.report.formatting import short_path
from pytest_memtrack.report.lines import fit, terminal_width
from pytest_memtrack.settings import parse_writable_path, resolve


class HtmlReportWriter:
    """Writes the HTML page once the report model is final."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False
        self.error: str | None = None  # why the page was not written

    @pytest.hookimpl(trylast=True)
    def pytest_memtrack_report_ready(self, session: pytest.Session, report: dict[str, Any]) -> None:
        try:
            from pytest_memtrack.report.html import write_html  # jinja2 and the templates: only to write one

            write_html(report, self.path)
        except OSError as exc:  # a warning line, never a failed session (the JSON report decides nothing here)
            self.error = describe_os_error(exc)
            return
        except KeyboardInterrupt:
            self.error = "interrupted (Ctrl-C)"
            raise
        self.written = True

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        path = short_path(self.path, str(terminalreporter.config.rootpath))
        width = terminal_width(terminalreporter)
        if self.written:
            lines, markup = fit(f"memtrack: HTML report: {path}", width), {}
        elif self.error:
            lines = fit(f"memtrack: warning: could not write the HTML report {path}: {self.error}", width)
            markup = {"yellow": True}
        else:
            return
        for line in lines:
            terminalreporter.write_line(line, **markup)


class GithubSummary:
    """Appends the Markdown verdict to ``$GITHUB_STEP_SUMMARY`` once the report model is final."""

    @pytest.hookimpl(trylast=True)
    def pytest_memtrack_report_ready(self, session: pytest.Session, report: dict[str, Any]) -> None:
        path = os.environ.get(github.ENV)
        if path:
            github.append_summary(report, path)


def configure(config: pytest.Config) -> None:
    path = resolve(config, "memtrack_html", parse_writable_path, None)
    if path is not None:
        config.pluginmanager.register(HtmlReportWriter(path), "memtrack-html")
    session = config.pluginmanager.get_plugin("memtrack-session")
    if config.pluginmanager.has_plugin("html") and session is not None:  # pytest-html: its results table's columns
        from pytest_memtrack.report import html_columns

        html_columns.configure(config, session.recorder.entries)
    if os.environ.get(github.ENV) and not config.pluginmanager.has_plugin("memtrack-github-summary"):
        config.pluginmanager.register(GithubSummary(), "memtrack-github-summary")
