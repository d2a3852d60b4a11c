"""The live dashboard page (``GET /``): the summary rendered now, refreshed by a poll every 2 s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_memtrack import __version__
from pytest_memtrack.report.templates import environment


def render_dashboard(summary: dict[str, Any], mode: str, nonce: str, notes: Sequence[str] = ()) -> str:
    """The page for ``summary`` (the spec's summary payload); ``mode`` is "live" or "saved report"; ``notes`` are
    lines shown under the title."""
    return environment().get_template("dashboard.html.j2").render(
        summary=summary, mode=mode, nonce=nonce, notes=list(notes), version=__version__, poll_ms=2000,
        summary_url="/api/packages/memory/summary", package_url="/api/packages/memory/")
