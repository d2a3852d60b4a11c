"""The one reader of saved JSON reports, for every command that takes one (``html``, ``serve``, ``compare``).

One validation: the file is readable UTF-8 JSON, says it is a pytest-memtrack report of format version 1, and
carries the sections every renderer reads. Each way it can be wrong is a ``ReportError`` sentence naming the file.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_memtrack.errors import ReportError

FORMAT_VERSION = 1
#: The sections a renderer or the server reads, with their JSON types.
SECTIONS: tuple[tuple[str, type], ...] = (("run", dict), ("summary", dict), ("leaks", dict), ("suggestions", dict),
                                          ("packages", dict), ("tests", list))


def load_report(path: str) -> dict[str, Any]:
    """Read and check a saved report; raises ``ReportError`` with a sentence."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ReportError(f"cannot read the report {path!r}: it does not exist.") from None
    except IsADirectoryError:
        raise ReportError(f"cannot read the report {path!r}: it is a directory, not a JSON report file.") from None
    except UnicodeDecodeError:
        raise ReportError(f"cannot read the report {path!r}: it is not UTF-8 text.") from None
    except OSError as exc:
        raise ReportError(f"cannot read the report {path!r}: {exc.strerror or exc}.") from None
    try:
        report = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{path!r} is not valid JSON ({exc}).") from None
    return check_report(report, repr(path))


def check_report(report: Any, origin: str) -> dict[str, Any]:
    """``report`` when it is a pytest-memtrack report this version reads, else ``ReportError`` naming ``origin``."""
    tool = report.get("tool") if isinstance(report, dict) else None
    if not isinstance(tool, dict) or tool.get("name") != "pytest-memtrack":
        raise ReportError(f"{origin} is not a pytest-memtrack JSON report (write one with pytest --memtrack "
                          "--memtrack-json=PATH).")
    if report.get("format_version") != FORMAT_VERSION:
        raise ReportError(f"{origin} has report format version {report.get('format_version')!r}; this version of "
                          f"pytest-memtrack reads format version {FORMAT_VERSION}.")
    missing = [name for name, kind in SECTIONS if not isinstance(report.get(name), kind)]
    if missing:
        raise ReportError(f"{origin} is not a complete pytest-memtrack JSON report (missing or malformed: "
                          f"{', '.join(missing)}).")
    return report
