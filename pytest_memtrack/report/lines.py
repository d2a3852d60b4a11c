"""Lines that fit the terminal: every line the plugin prints (its summary section, a leaking test's failure message,
the regression table) goes through here, so each is cut at one width, pytest's (``TerminalWriter.fullwidth``).

Pure functions of text and a width. Words are never broken: a single word longer than the width (a long node id,
a path) stays whole on its own line, since a broken path or node id can no longer be copied.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

#: What pytest's terminal writer falls back to without a terminal (and what pytester's runs see).
DEFAULT_WIDTH = 80
#: How much deeper than its first line a wrapped line's continuation starts.
HANGING = "    "


def fit(line: str, width: int | None, *, whole_tail: bool = False) -> list[str]:
    """``line`` wrapped to ``width`` columns, continuation lines indented four beyond the line's own indent;
    unchanged when it fits or ``width`` is None. ``whole_tail``: a closing parenthesis group (``(score 0.25 > limit
    0.1)``) moves to the next line whole rather than being split."""
    if width is None or len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip(" "))]
    cut = line.rfind(" (")
    if whole_tail and line.endswith(")") and 0 < cut and len(line[:cut]) <= width:
        return [line[:cut], *fit(indent + HANGING + line[cut + 1:], width)]
    return textwrap.wrap(line, width=max(width, len(indent) + len(HANGING) + 8),
                         subsequent_indent=indent + HANGING, break_long_words=False, break_on_hyphens=False) or [line]


def fit_all(lines: Iterable[str], width: int | None) -> list[str]:
    return [part for line in lines for part in fit(line, width)]


def fit_command(prefix: str, words: Sequence[str], width: int | None) -> list[str]:
    """A shell command after ``prefix`` (``"  reproduce: "``), wrapped with backslash continuations so that the
    lines, pasted into a POSIX shell as they are, run the one command."""
    quoted = [shlex.quote(word) for word in words]
    one_line = prefix + " ".join(quoted)
    if width is None or len(one_line) <= width:
        return [one_line]
    indent = " " * (len(prefix) - len(prefix.lstrip(" "))) + HANGING
    lines: list[str] = []
    current = prefix + quoted[0]
    for word in quoted[1:]:
        if len(current) + 1 + len(word) + 2 <= width:  # room for " word" and a trailing " \"
            current += " " + word
        else:
            lines.append(current + " \\")
            current = indent + word
    lines.append(current)
    return lines


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its start replaced by ``…`` when cut: the end of a package name or
    a node id is what tells it apart."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def terminal_width(terminalreporter: Any) -> int:
    """pytest's width for its own lines (``TerminalWriter.fullwidth``: the terminal's, or ``COLUMNS``, else 80)."""
    try:
        return int(terminalreporter.config.get_terminal_writer().fullwidth)
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_WIDTH
