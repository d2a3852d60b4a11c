"""Two columns in pytest-html's results table, "Leak score" and "Memory", when pytest-html is installed.

Registered by ``report.plugin.configure`` only when the ``html`` plugin (pytest-html 4.x) is present, so this
module is never imported otherwise (its hooks would be unknown to pluggy without pytest-html's hookspecs). The
figures are read from the test entries the JSON report is built from (``session.recorder``), formatted by the
functions every other renderer uses.
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from pytest_memtrack.report.formatting import format_score
from pytest_memtrack.report.verdict import memory_figure

#: Where our columns go: after pytest-html's Result, Test and Duration.
POSITION = 3
HEADERS = ('<th class="sortable" data-column-type="memtrackScore">Leak score</th>',
           '<th data-column-type="memtrackMemory">Memory</th>')


class HtmlColumns:
    """pytest-html's hooks; ``entries`` is the recorder's dict of test entries by node id (filled on every logged
    report before pytest-html, which builds a test's rows once its teardown is logged, reads it)."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = entries

    @pytest.hookimpl
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells[POSITION:POSITION] = list(HEADERS)

    @pytest.hookimpl
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        test = self.entries.get(getattr(report, "nodeid", ""), {})
        score = format_score(test.get("leak_score"))
        cells[POSITION:POSITION] = [f'<td class="col-memtrackScore">{html.escape(score)}</td>',
                                    f'<td class="col-memtrackMemory">{html.escape(memory_figure(test))}</td>']


def configure(config: pytest.Config, entries: dict[str, dict[str, Any]]) -> None:
    if not config.pluginmanager.has_plugin("memtrack-html-columns"):
        config.pluginmanager.register(HtmlColumns(entries), "memtrack-html-columns")
