"""The OpenAPI 3.1 document of the HTTP API, built from the JSON Schemas in ``pytest_memtrack.schemas``.

Every payload schema becomes ``#/components/schemas/<name>`` (its ``$id``/``$schema`` dropped and its references
to siblings such as ``"summary.json"`` or ``"#"`` rewritten to component references, so no tool has to fetch
anything). Each success response is ``<Name>Response``: the ``envelope`` schema with ``data`` bound to the
payload schema; every error response is the ``error`` schema.
"""

from __future__ import annotations

import copy
from typing import Any

from pytest_memtrack import __version__
from pytest_memtrack.schemas import load_schema

__all__ = ["build_document", "PAYLOAD_SCHEMAS"]

#: The schemas the API uses (the report schema is not an API payload).
PAYLOAD_SCHEMAS = ("envelope", "error", "summary", "package_info", "leaks", "suggestions", "garbage_collection",
                   "update_metrics")

_COMPONENTS = "#/components/schemas/"
#: Names under /api/packages/memory/ that are GET routes of their own: the concrete path wins (as OpenAPI matches
#: too), so such a name is never a {package_name} and is excluded from its values (a client generating requests from
#: this document, such as schemathesis, would otherwise expect package info from .../summary). A GET on a POST-only
#: name (garbage-collection, update-metrics) answers 405, which {package_name} documents.
GET_ROUTE_NAMES = ("summary", "leaks", "optimization-suggestions")


def _rewrite_refs(node: Any, own: str) -> Any:
    """Point ``$ref`` at components: ``"x.json#/a"`` -> ``#/components/schemas/x/a``; ``"#/a"`` -> own component."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                document, _, fragment = value.partition("#")
                name = document.rsplit("/", 1)[-1].removesuffix(".json") if document else own
                out[key] = _COMPONENTS + name + fragment
            elif key in ("$id", "$schema"):
                continue
            else:
                out[key] = _rewrite_refs(value, own)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, own) for item in node]
    return node


def _envelope_of(payload: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": _COMPONENTS + "envelope"},
                      {"type": "object", "properties": {"data": {"$ref": _COMPONENTS + payload}}}]}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _COMPONENTS + ref}}}}


def _error(description: str) -> dict[str, Any]:
    return _json("error", description)


#: Answers of the access rules (``server.access``), possible on every route.
ACCESS_ERRORS = {
    "401": "The server has a token and the request did not carry it ('Authorization: Bearer <token>' or ?token=).",
    "403": "The Host header does not name this server, or a write came from another origin.",
}


def _operation(op_id: str, summary: str, payload: str, errors: dict[str, str], *, parameters: list | None = None,
               write: bool = False) -> dict[str, Any]:
    responses = {"200": _json(payload + "_response", f"Success: the {payload.replace('_', ' ')} payload.")}
    responses.update({code: _error(text) for code, text in {**ACCESS_ERRORS, **errors}.items()})
    if write:
        responses["415"] = _error("The request body is not JSON ('Content-Type: application/json').")
    responses["500"] = _error("The server failed; the details are in its log, never in the response.")
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    # Either no token is configured (loopback server) or the bearer token is required, on every route.
    operation["security"] = [{}, {"bearerToken": []}]
    return operation


def _metrics_operation() -> dict[str, Any]:
    """``GET /metrics``: Prometheus' text format, not JSON (errors are JSON like everywhere)."""
    responses: dict[str, Any] = {"200": {
        "description": "The summary, package and test figures in the Prometheus text exposition format 0.0.4 "
                       "(Content-Type: text/plain; version=0.0.4).",
        "content": {"text/plain": {"schema": {"type": "string"}}}}}
    responses.update({code: _error(text) for code, text in ACCESS_ERRORS.items()})
    responses["500"] = _error("The server failed; the details are in its log, never in the response.")
    return {"operationId": "getPrometheusMetrics", "summary": "Memory figures for Prometheus to scrape.",
            "responses": responses, "security": [{}, {"bearerToken": []}]}


def build_document(server_url: str | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document (a fresh dict); ``server_url`` fills ``servers`` when given."""
    schemas = {name: _rewrite_refs(load_schema(name), name) for name in PAYLOAD_SCHEMAS}
    for name in ("summary", "package_info", "leaks", "suggestions", "garbage_collection", "update_metrics"):
        schemas[name + "_response"] = _envelope_of(name)
    read_only = {"409": "This server serves a saved report, which cannot do this.",
                 "413": "The request body is larger than 64 KiB."}
    base = "/api/packages/memory"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "pytest-memtrack memory API",
            "version": __version__,
            "description": "Per-package memory usage, leak detection and optimisation suggestions of a pytest "
                           "session (live) or of a saved JSON report. Success responses are "
                           "{\"status\": \"success\", \"data\": ...}; errors are "
                           "{\"status\": \"error\", \"error\": {\"code\", \"message\"}}.",
        },
        "paths": {
            f"{base}/summary": {"get": _operation(
                "getMemorySummary", "Memory usage summary over all packages.", "summary", {})},
            f"{base}/leaks": {"get": _operation(
                "getMemoryLeaks", "Packages whose leak score reaches the threshold.", "leaks",
                {"400": "The threshold is not a number between 0 and 1."},
                parameters=[{"name": "threshold", "in": "query", "required": False,
                             "description": "Leak-score threshold in [0, 1] (default: the session's leak "
                                            "threshold, 0.1 unless configured).",
                             "schema": {"type": "number", "minimum": 0, "maximum": 1}}])},
            f"{base}/optimization-suggestions": {"get": _operation(
                "getOptimizationSuggestions", "Memory optimisation suggestions.", "suggestions", {})},
            f"{base}/garbage-collection": {"post": _operation(
                "forceGarbageCollection", "Run the garbage collector and report the memory freed.",
                "garbage_collection", read_only, write=True)},
            f"{base}/update-metrics": {"post": _operation(
                "updateMemoryMetrics", "Update the memory metrics of every package.", "update_metrics",
                read_only, write=True)},
            f"{base}/{{package_name}}": {"get": _operation(
                "getPackageMemoryInfo", "Detailed memory information for one package.", "package_info",
                {"404": "No package of that name is tracked.",
                 "400": "The package name is not valid percent-encoded UTF-8.",
                 "405": "The name is one of the POST-only routes (garbage-collection, update-metrics)."},
                parameters=[{"name": "package_name", "in": "path", "required": True,
                             "description": "Registered package name (URL-encoded; dotted names allowed). The "
                                            "names summary, leaks, optimization-suggestions, garbage-collection "
                                            "and update-metrics are routes, not packages.",
                             "schema": {"type": "string", "minLength": 1, "not": {"enum": list(GET_ROUTE_NAMES)}}}])},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerToken": {
                "type": "http", "scheme": "bearer",
                "description": "Required on every route whenever the server has a token "
                               "(--memtrack-serve-token, MEMTRACK_TOKEN); always required off loopback. "
                               "A browser opens the dashboard as /?token=TOKEN."}},
        },
    }
    document["paths"]["/metrics"] = {"get": _metrics_operation()}
    if server_url:
        document["servers"] = [{"url": server_url.rstrip("/")}]
    return copy.deepcopy(document)
