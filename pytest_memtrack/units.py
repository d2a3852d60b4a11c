"""Byte sizes, both ways: one formatter for every surface (failure message, terminal, HTML, dashboard, the gate's
table) and one table of the size units users may write (``64KB``, ``1.5MiB``). Binary units throughout. Also the one
strict reader of numbers users write (options, ini keys, query parameters), ``parse_decimal``, and the one
counter of things, ``plural``."""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
#: What every surface shows for a figure that is missing or not a finite number.
MISSING = "—"
#: Size units a user may write, lower-cased, in bytes: ``B``, ``K``/``KB``/``KiB``, ``M``..., ``G``... (binary).
SIZE_UNITS = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
              "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def format_bytes(value: Any, *, signed: bool = False, decimals: int = 1) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``signed`` adds ``+`` to growth; missing or not a finite number -> ``MISSING``."""
    number = finite_number(value)
    if number is None:
        return MISSING
    sign = "-" if number < 0 else ("+" if signed and number > 0 else "")
    size = abs(number)
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.{decimals}f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(value: Any) -> str:
    """Seconds as a person reads them, for every surface (a test's duration, a run's, a time to a memory limit):
    ``350 ms``, ``12.3 s``, ``4 min 10 s``, ``3.5 h``, ``2.0 d``; missing or negative -> ``MISSING``."""
    number = finite_number(value)
    if number is None or number < 0:
        return MISSING
    if number < 1:
        return f"{number * 1000:.0f} ms"
    if number < 120:
        return f"{number:.1f} s"
    if number < 7200:
        return f"{number // 60:.0f} min {number % 60:.0f} s"
    if number < 172800:
        return f"{number / 3600:.1f} h"
    return f"{number / 86400:.1f} d"


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def parse_decimal(text: str) -> float | None:
    """A finite number written the way a person writes one (``0.1``, ``5``, ``.5``, ``1e-3``), else None.

    Stricter than ``float()`` on purpose: ``float("0_1")`` is 1.0 and ``float("١")`` (an Arabic-Indic one) is 1.0,
    so a typo or a pasted digit of another script would silently become another value; ``inf``, ``nan`` and
    numbers too large for a float are refused as well.
    """
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        return None
    value = float(stripped)
    return value if math.isfinite(value) else None


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``plural(1, "test")`` -> ``'1 test'``, ``plural(3, "test")`` -> ``'3 tests'``: the one way every surface
    counts things (never "test(s)"); ``plural_form`` for nouns that do not just take an "s"."""
    word = noun if count == 1 else (plural_form or noun + "s")
    return f"{count:,} {word}"


def shown(text: str, limit: int = 40) -> str:
    """``repr(text)`` for a message, cut short when long (a value of 4,301 digits is not worth a screenful)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit // 2]!r}… ({len(text):,} characters)"
