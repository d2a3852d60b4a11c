"""Every colour pair the report and the dashboard draw text or controls with meets WCAG 2.1 AA, in both schemes.

The colours are the CSS variables of ``templates/style.css`` (light in ``:root``, dark in the
``prefers-color-scheme: dark`` block); the pairs are where the templates put one on the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STYLE = Path(__file__).resolve().parents[1] / "pytest_memtrack" / "report" / "templates" / "style.css"

#: (foreground, background): text, 4.5:1 (WCAG 1.4.3).
TEXT = [("ink", "bg"), ("ink", "panel"), ("ink", "card"), ("ink", "bad-bg"), ("ink", "good-bg"),
        ("muted", "bg"), ("muted", "panel"), ("muted", "card"), ("muted", "bad-bg"), ("muted", "good-bg"),
        ("accent", "bg"), ("accent", "panel"), ("accent", "card"), ("accent", "bad-bg"), ("accent", "good-bg"),
        ("bad", "bad-bg"), ("bad", "card"), ("bad", "bg"), ("good", "good-bg"), ("warn", "warn-bg")]
#: (foreground, background): input borders, focus rings and chart lines, 3:1 (WCAG 1.4.11).
NON_TEXT = [("input", "bg"), ("input", "card"), ("focus", "bg"), ("focus", "panel"), ("focus", "bad-bg"),
            ("chart", "panel"), ("chart-muted", "panel")]


def _variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", block))


def schemes() -> dict[str, dict[str, str]]:
    text = STYLE.read_text(encoding="utf-8")
    dark_at = text.index("@media (prefers-color-scheme: dark)")
    light = _variables(text[:dark_at])
    dark = _variables(text[dark_at:text.index("}", text.index("{", dark_at + 40))])
    return {"light": light, "dark": {**light, **dark}}


def luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_contrast_formula_gives_wcag_reference_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_the_dark_scheme_redefines_every_colour_of_the_light_one():
    text = STYLE.read_text(encoding="utf-8")
    dark_at = text.index("@media (prefers-color-scheme: dark)")
    assert set(_variables(text[:dark_at])) == set(_variables(text[dark_at:]))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_and_controls_meet_wcag_aa_contrast(scheme):
    colours = schemes()[scheme]
    failing = [f"{fg} on {bg}: {contrast(colours[fg], colours[bg]):.2f}:1" for fg, bg in TEXT
               if contrast(colours[fg], colours[bg]) < 4.5]
    failing += [f"{fg} on {bg}: {contrast(colours[fg], colours[bg]):.2f}:1" for fg, bg in NON_TEXT
                if contrast(colours[fg], colours[bg]) < 3.0]
    assert not failing, failing
