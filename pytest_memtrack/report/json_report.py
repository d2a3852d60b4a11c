"""The JSON report: the report model, dumped atomically (a crash never leaves half a file)."""

from __future__ import annotations

import json
import math
from typing import Any

from pytest_memtrack.report.atomic import write_text_atomic


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: such readings become null rather than an unreadable file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(_finite(report), indent=1, sort_keys=False, default=str) + "\n"


def write_json(report: dict[str, Any], path: str) -> None:
    write_text_atomic(path, dumps(report))
