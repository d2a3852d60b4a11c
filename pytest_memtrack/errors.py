"""The plugin's own exceptions: each is a user's mistake told in one sentence, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A user mistake on the command line: printed as one sentence, exit status 2."""


class ReportError(CliError, ValueError):
    """A file that is not a readable pytest-memtrack JSON report; the sentence names the file and what is wrong."""
