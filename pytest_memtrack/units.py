"""Byte sizes for people: one formatter for the failure message, the terminal, the HTML page and the gate's table."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(value: float | None, *, signed: bool = False, decimals: int = 1, missing: str = "-") -> str:
    """``1536`` -> ``'1.5 KiB'`` (binary units); ``signed`` adds ``+`` to growth; ``None`` -> ``missing``."""
    if value is None:
        return missing
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    size = abs(float(value))
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.{decimals}f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
