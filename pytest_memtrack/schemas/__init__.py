"""JSON Schemas (draft 2020-12) of the API payloads and of the JSON report.

The schema files are package data next to this module; each has an ``$id`` under :data:`BASE_URI` and refers to
its siblings by file name (``{"$ref": "summary.json"}``), so a ``referencing.Registry`` holding all of them
resolves every reference without touching the network.

Only :func:`validator` and :func:`validate` need ``jsonschema``, which is a test dependency: it is imported inside
those functions, so importing this module (and :func:`load_schema`) works at runtime without it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from jsonschema import Draft202012Validator

__all__ = ["BASE_URI", "SCHEMA_NAMES", "load_schema", "registry", "validate", "validator"]

#: The ``$id`` of schema ``NAME`` is ``BASE_URI + NAME + ".json"``.
BASE_URI = "https://pytest-memtrack.dev/schemas/"

#: Every schema shipped in this package, by name (the file name without ``.json``).
SCHEMA_NAMES: tuple[str, ...] = (
    "envelope",  # {"status": "success", "data": ...}
    "error",  # {"status": "error", "error": {"code": ..., "message": ...}}
    "summary",  # GET /api/packages/memory/summary
    "package_info",  # GET /api/packages/memory/{package_name}
    "leaks",  # GET /api/packages/memory/leaks?threshold=T
    "suggestions",  # GET /api/packages/memory/optimization-suggestions
    "garbage_collection",  # POST /api/packages/memory/garbage-collection
    "update_metrics",  # POST /api/packages/memory/update-metrics
    "session",  # GET /api/session (progress, leaking tests, verdict; the dashboard's data)
    "report",  # the whole JSON report (docs/report-format.md)
)


def _normalize(name: str) -> str:
    base = name[: -len(".json")] if name.endswith(".json") else name
    if base not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known schemas: {', '.join(SCHEMA_NAMES)}")
    return base


def load_schema(name: str) -> dict[str, Any]:
    """Return a fresh copy of schema ``name`` ("summary" or "summary.json"), parsed from the package data.

    Raises ValueError for a name that is not in :data:`SCHEMA_NAMES`.
    """
    base = _normalize(name)
    text = resources.files(__name__).joinpath(base + ".json").read_text(encoding="utf-8")
    return json.loads(text)


def registry() -> Any:
    """Return a ``referencing.Registry`` holding every schema under its ``$id`` and under its bare file name.

    Needs ``referencing`` (installed with ``jsonschema``). Use it to validate against a sub-schema, e.g.
    ``Draft202012Validator({"$ref": "envelope.json#/$defs/summary"}, registry=registry())``.
    """
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    pairs = []
    for base in SCHEMA_NAMES:
        resource = Resource.from_contents(load_schema(base), default_specification=DRAFT202012)
        pairs.append((BASE_URI + base + ".json", resource))
        pairs.append((base + ".json", resource))
    return Registry().with_resources(pairs).crawl()


def validator(name: str) -> Draft202012Validator:
    """Return a ``jsonschema.Draft202012Validator`` for schema ``name`` whose registry resolves the sibling schemas.

    Needs ``jsonschema`` (a test dependency), imported here rather than at module level.
    """
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name), registry=registry())


def validate(name: str, instance: Any) -> None:
    """Validate ``instance`` against schema ``name``; raise the most relevant ``jsonschema.ValidationError``."""
    from jsonschema.exceptions import best_match

    error = best_match(validator(name).iter_errors(instance))
    if error is not None:
        raise error
