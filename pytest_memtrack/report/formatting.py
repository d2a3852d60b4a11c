"""Figures as a reader sees them, for every renderer of the report model (HTML, step summary, dashboard).

Pure functions of JSON-able values; anything missing or not a finite number reads ``units.MISSING``. Bytes go
through the one byte formatter, ``units.format_bytes``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sysconfig
from typing import Any

from pytest_memtrack import units
from pytest_memtrack.units import MISSING, finite_number, format_duration  # noqa: F401  (one formatter, re-exported)

_number = finite_number


def format_bytes(value: Any) -> str:
    """``1536`` -> ``'1.5 KiB'``; negative sizes keep their sign; missing or not a number -> ``MISSING``."""
    return units.format_bytes(value)


def format_signed_bytes(value: Any) -> str:
    """Growth: ``'+1.5 KiB'``, ``'-12 B'``, ``'0 B'``."""
    return units.format_bytes(value, signed=True)


def format_number(value: Any) -> str:
    """Plain numbers for generic cells: ints with separators, floats with 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: MISSING}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def format_count(value: Any, *, signed: bool = False) -> str:
    """Counts per run: ``2.333`` -> ``'2.3'``, ``2.0`` -> ``'2'``; ``signed`` adds ``+`` to growth."""
    number = _number(value)
    if number is None:
        return MISSING
    text = f"{number:,.1f}".removesuffix(".0")
    return "+" + text if signed and number > 0 else text


_INSTALL_MARKERS = ("/site-packages/", "/dist-packages/")


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {os.path.normpath(paths[key]) for key in ("stdlib", "platstdlib") if paths.get(key)}
    return tuple(sorted(dirs, key=len, reverse=True))


def short_path(path: Any, rootdir: Any = None) -> str:
    """A source path as a reader knows it: relative to the rootdir when under it; from ``site-packages/`` on for an
    installed package (``site-packages/jinja2/utils.py``); from ``python3.X/`` on for the standard library
    (``python3.11/uuid.py``); else as it was. Checked in that order, so a virtualenv inside the project still reads
    ``site-packages/...``. Paths already relative (the report's project files) and ``<frozen ...>`` stay as they are.
    """
    text = str(path)
    for marker in _INSTALL_MARKERS:
        if marker in text:
            return marker[1:] + text.rsplit(marker, 1)[1]
    if isinstance(rootdir, str) and rootdir and text.startswith(rootdir.rstrip("/") + "/"):
        return text[len(rootdir.rstrip("/")) + 1:]
    for directory in _stdlib_dirs():
        if text.startswith(directory + os.sep):
            return os.path.basename(directory) + text[len(directory):]
    return text


def format_score(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.2f}"


def format_time(timestamp: Any) -> str:
    number = _number(timestamp)
    if number is None:
        return MISSING
    try:
        moment = _dt.datetime.fromtimestamp(number, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return MISSING
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


