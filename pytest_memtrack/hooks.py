"""Hook specifications: the extension points other plugins (and our own features) implement.

The session builds one report model (see docs/report-format.md) and passes it through two hooks, so features
such as the history gate or the HTML writer stay in their own modules and third-party plugins can join in.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_memtrack_enrich_report(session: pytest.Session, report: dict[str, Any]) -> None:
    """Add data to the report model before anything is written (e.g. the baseline comparison).

    Implementations mutate ``report`` in place and must keep it JSON-able with plain built-in types.
    """


@pytest.hookspec
def pytest_memtrack_report_ready(session: pytest.Session, report: dict[str, Any]) -> None:
    """Consume the finished report model (write HTML, store history, publish to a summary page).

    Called after the JSON report (if any) was written; an exception here is reported as a warning, never lost data.
    """
