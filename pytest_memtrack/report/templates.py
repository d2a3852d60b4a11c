"""The one Jinja environment for every page: the HTML report and the server's dashboard.

Autoescaping, ``StrictUndefined`` (a template that names a missing value fails in the tests, not silently in a
user's report), templates read from this package's ``templates/`` folder, and the shared filters.
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cache, lru_cache
from typing import Any
from urllib.parse import quote

from pytest_memtrack.units import format_bytes, format_duration

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = format_bytes
    env.filters["duration"] = format_duration
    env.filters["pathseg"] = lambda value: quote(str(value), safe="")
    return env


@cache
def inline_script(name: str) -> tuple[str, str]:
    """A page's inline script from ``templates/`` and its CSP hash: only this exact script may run in the page."""
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as handle:
        text = handle.read()
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"'sha256-{digest}'"
