"""Line charts with axes, as plain geometry for the templates' inline SVG (report and dashboard alike).

A chart without a scale lies: a sparkline stretched to its own min and max draws +259 B on 834.8 KiB as the same
climb as +941 KiB. So every chart here says its scale: either a **zero baseline** (package histories: a stable
package draws flat, a growing one climbs by its real share) with the top labelled, or a **tight range** (a leak's
readings per run, where the growth is the point) whose bottom tick is the absolute reading and whose top tick is
the growth above it ("+50.0 KiB"), so the size of the climb is read, not guessed. The x axis is labelled too
(measured run, or seconds since the first reading). Pure functions; bytes through ``units.format_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pytest_memtrack.units import finite_number, format_bytes

#: Room for the y tick labels (left) and the x tick labels (below), in SVG units.
LEFT, BOTTOM, TOP, RIGHT = 66.0, 14.0, 5.0, 4.0


def clean_points(points: Iterable[Sequence[Any]]) -> list[tuple[float, float]]:
    """Finite ``(x, y)`` pairs sorted by x; anything else dropped."""
    pairs = ((finite_number(p[0]), finite_number(p[1])) for p in points if isinstance(p, (list, tuple)) and len(p) >= 2)
    return sorted((x, y) for x, y in pairs if x is not None and y is not None)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"


def axis_chart(points: Iterable[Sequence[Any]], width: int, height: int, *, zero_baseline: bool,
               x_axis: str = "run") -> dict[str, Any] | None:
    """Geometry of a line chart of byte readings; None without a reading.

    ``x_axis``: ``"run"`` numbers the readings 1..N (x values are ignored but for order); ``"time"`` labels the
    seconds since the first reading. The result holds the ``polyline`` points, the plot box, the y ticks
    ``[(y, label)]``, the x ticks ``[(x, label, anchor)]``, the axis titles and a one-line ``summary`` for
    ``aria-label``.
    """
    pairs = clean_points(points)
    if not pairs:
        return None
    if x_axis == "run":
        pairs = [(float(i + 1), y) for i, (_, y) in enumerate(pairs)]
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    first, last, low, high = ys[0], ys[-1], min(ys), max(ys)
    if zero_baseline:
        y_lo, y_hi = min(0.0, low), max(0.0, high)
        if y_hi == y_lo:
            y_hi = y_lo + 1.0
        ticks_text = [(y_lo, format_bytes(y_lo)), (y_hi, format_bytes(y_hi))]
    else:
        y_lo, y_hi = low, high
        if y_hi == y_lo:  # a flat series: draw it mid-height, say it did not move
            y_lo, y_hi = low - 1.0, high + 1.0
            ticks_text = [((y_lo + y_hi) / 2, format_bytes(low))]
        else:
            ticks_text = [(y_lo, format_bytes(y_lo)), (y_hi, format_bytes(y_hi - y_lo, signed=True))]
    x_lo, x_hi = xs[0], xs[-1]
    plot_w, plot_h = max(width - LEFT - RIGHT, 1.0), max(height - TOP - BOTTOM, 1.0)

    def px(x: float) -> float:
        return LEFT + (plot_w / 2 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo) * plot_w)

    def py(y: float) -> float:
        return TOP + (1.0 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pairs)
    if x_axis == "run":
        x_ticks = [(px(x_lo), "run 1", "start"), (px(x_hi), f"run {len(pairs)}", "end")] if len(pairs) > 1 \
            else [(px(x_lo), "run 1", "middle")]
        x_title = "measured run"
    else:
        x_ticks = [(px(x_lo), "0 s", "start"), (px(x_hi), _seconds(x_hi - x_lo), "end")] if x_hi > x_lo \
            else [(px(x_lo), "one reading", "middle")]
        x_title = "seconds since the first reading"
    change = last - first
    summary = (f"{len(pairs)} reading{'s' if len(pairs) != 1 else ''} over {x_title}: {format_bytes(first)} to "
               f"{format_bytes(last)} ({format_bytes(change, signed=True)}); the y axis starts at "
               f"{format_bytes(y_lo) if zero_baseline else format_bytes(low)}")
    return {
        "width": width, "height": height, "points": line,
        "plot": {"x": LEFT, "y": TOP, "w": round(plot_w, 1), "h": round(plot_h, 1), "bottom": round(TOP + plot_h, 1)},
        "y_ticks": [(round(py(value), 1), label) for value, label in ticks_text],
        "x_ticks": [(round(x, 1), label, anchor) for x, label, anchor in x_ticks],
        "x_title": x_title,
        "dot": [f"{px(xs[-1]):.1f}", f"{py(last):.1f}"],
        "zero_baseline": zero_baseline,
        "count": len(pairs), "first": format_bytes(first), "last": format_bytes(last),
        "low": format_bytes(low), "high": format_bytes(high), "change": format_bytes(change, signed=True),
        "summary": summary,
    }
