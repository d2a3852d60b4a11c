"""The HTTP API as a pure-ish function: a request (method, target, headers, body) -> a :class:`Response`.

``transport`` owns sockets and threads, ``plugin`` the pytest option, ``cli`` the ``serve`` command; this module
owns routing, validation and the error model over a data source (``sources``: the live loader, or a saved
report), so the whole API can be unit-tested without a socket.

Routes (the spec's, in the envelope ``{"status": "success", "data": ...}``)::

    GET  /                                          live dashboard (HTML)
    GET  /api/openapi.json                          OpenAPI 3.1 document (plain JSON, not enveloped)
    GET  /metrics                                   Prometheus text exposition format (``server.metrics``)
    GET  /api/packages/memory/summary
    GET  /api/packages/memory/leaks?threshold=0.1
    GET  /api/packages/memory/optimization-suggestions
    POST /api/packages/memory/garbage-collection    JSON or empty body, same origin only
    POST /api/packages/memory/update-metrics        JSON or empty body, same origin only
    GET  /api/packages/memory/{package_name}        URL-decoded; dotted names allowed

The fixed routes are matched before ``{package_name}``, so a package literally named ``summary``, ``leaks``,
``optimization-suggestions``, ``garbage-collection`` or ``update-metrics`` is shadowed (as in the spec's API).
Errors are ``{"status": "error", "error": {"code": <HTTP status>, "message": <sentence>}}``. Before any route,
the access rules (``access``): the Host header, cross-site writes, the token.
"""

from __future__ import annotations

import json
import secrets
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pytest_memtrack.server.access import AccessRules, Refused, check, host_names
from pytest_memtrack.server.sources import DEFAULT_THRESHOLD, MemorySource, ReadOnlySource
from pytest_memtrack.units import parse_decimal

__all__ = [
    "API_PREFIX",
    "MAX_BODY_BYTES",
    "App",
    "HttpError",
    "MemorySource",
    "ReadOnlySource",
    "Response",
]

API_PREFIX = "/api/packages/memory/"
#: Largest request body accepted (Content-Length); larger requests get 413 without the body being read.
MAX_BODY_BYTES = 64 * 1024

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
_BASE_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))


@dataclass
class Response:
    """What the transport writes: status line, headers, body (already encoded)."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False  # close the connection afterwards (e.g. an unread oversized body)

    def all_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                *_BASE_HEADERS, *self.headers]

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(Exception):
    """An error answer: HTTP status, one sentence, optional extra headers."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.close = close

    def response(self) -> Response:
        return error_response(self.status, self.message, self.headers, close=self.close)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _dumps(payload), headers=headers or [])


def success(data: Any) -> Response:
    return json_response(200, {"status": "success", "data": data})


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None, *,
                   close: bool = False) -> Response:
    response = json_response(status, {"status": "error", "error": {"code": status, "message": message}}, headers)
    response.close = close
    return response


#: Fixed routes: path -> {method: handler name}. Matched before the {package_name} route.
_FIXED_ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "_dashboard"},
    "/api/openapi.json": {"GET": "_openapi"},
    "/metrics": {"GET": "_metrics"},
    API_PREFIX + "summary": {"GET": "_summary"},
    API_PREFIX + "leaks": {"GET": "_leaks"},
    API_PREFIX + "optimization-suggestions": {"GET": "_suggestions"},
    API_PREFIX + "garbage-collection": {"POST": "_garbage_collection"},
    API_PREFIX + "update-metrics": {"POST": "_update_metrics"},
}
_PACKAGE_ROUTE = {"GET": "_package"}


class App:
    """Routes requests to a :class:`MemorySource`; never raises, never leaks a traceback to the client.

    ``token``: when set, every route needs it (``access``); ``hosts``: the ``Host`` values that name this server
    (``access.host_names``; empty: no Host check), set by the transport once it has bound (``bind``).
    ``dashboard(summary, mode, csp_nonce, notes)``: renders the HTML page (``str``); ``notes``: lines the page shows
    under its title (e.g. that xdist workers report their packages only when they finish); ``openapi``: returns
    the OpenAPI document (``dict``).
    ``log``: where the catch-all writes tracebacks (stderr by default).
    """

    def __init__(self, source: MemorySource, *, token: str | None = None, hosts: frozenset[str] = frozenset(),
                 default_threshold: float = DEFAULT_THRESHOLD, mode: str = "live",
                 dashboard: Callable[[dict[str, Any], str, str, Sequence[str]], str] | None = None,
                 notes: Sequence[str] = (),
                 openapi: Callable[[], dict[str, Any]] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.token = token or None
        self.rules = AccessRules(hosts=hosts, token=self.token)
        self.default_threshold = default_threshold
        self.mode = mode
        self.notes = tuple(notes)
        self._dashboard_renderer = dashboard
        self._openapi_builder = openapi
        self._openapi_body: bytes | None = None
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def bind(self, host: str, port: int, *, loopback: bool) -> None:
        """The address the transport listens on: on loopback, only Host values naming it are answered."""
        self.rules = AccessRules(hosts=host_names(host, port) if loopback else frozenset(), token=self.token)

    # -- entry point -------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response:
        """Answer one request. ``target`` is the raw request target (path and query, still percent-encoded)."""
        try:
            return self._dispatch(method.upper(), target, headers or {}, body)
        except HttpError as exc:
            return exc.response()
        except ReadOnlySource as exc:
            return error_response(409, str(exc))
        except Exception:  # the catch-all: log the traceback, tell the client nothing about it
            self._log(f"pytest-memtrack server: internal error on {method} {target[:200]!r}:\n"
                      + traceback.format_exc())
            return error_response(500, "The server failed to answer this request; the details are in its log.")

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        if not target.startswith("/"):
            raise HttpError(400, "The request target must be an absolute path such as /api/packages/memory/summary.")
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        try:
            check(self.rules, method, query, lambda name: _header(headers, name), body)
        except Refused as exc:
            raise HttpError(exc.status, exc.message, exc.headers) from None
        routes = _FIXED_ROUTES.get(path)
        args: tuple[Any, ...] = ()
        if routes is None and path.startswith(API_PREFIX) and "/" not in path[len(API_PREFIX):] \
                and path != API_PREFIX:
            routes = _PACKAGE_ROUTE
            args = (_decode_name(path[len(API_PREFIX):]),)
        if routes is None:
            raise HttpError(404, f"There is no endpoint at {_shorten(path)}; see /api/openapi.json for the API.")
        allowed = list(routes) + (["HEAD"] if "GET" in routes else [])
        lookup = "GET" if method == "HEAD" else method
        if lookup not in routes:
            raise HttpError(405, f"{_shorten(path)} does not accept {method}; use {' or '.join(allowed)}.",
                            [("Allow", ", ".join(allowed))])
        return getattr(self, routes[lookup])(*args, query=query)  # HEAD: the transport drops the body

    # -- handlers ----------------------------------------------------------------------------------------------

    def _summary(self, *, query: str) -> Response:
        return success(self.source.get_memory_usage_summary())

    def _leaks(self, *, query: str) -> Response:
        threshold = parse_threshold(query, self.default_threshold)
        return success(self.source.get_memory_leaks_report(threshold))

    def _suggestions(self, *, query: str) -> Response:
        return success(self.source.get_optimization_suggestions_report())

    def _garbage_collection(self, *, query: str) -> Response:
        return success(self.source.force_garbage_collection())

    def _update_metrics(self, *, query: str) -> Response:
        return success(self.source.update_all_memory_metrics())

    def _package(self, name: str, *, query: str) -> Response:
        info = self.source.get_package_memory_info(name)
        if info is None:
            raise HttpError(404, f"No package named {_shorten(name)!r} is tracked.")
        return success(info)

    def _metrics(self, *, query: str) -> Response:
        """The same payloads as the JSON routes, in Prometheus' text format (one truth: ``server.metrics``)."""
        from pytest_memtrack.server.metrics import CONTENT_TYPE, render_metrics

        summary = self.source.get_memory_usage_summary()
        every = getattr(self.source, "get_package_memory_infos", None)  # optional (``MemorySource``): all at once
        packages = every() if every is not None else {
            name: info for name in self.source.package_names()
            if (info := self.source.get_package_memory_info(name)) is not None}
        counts = getattr(self.source, "get_test_counts", None)  # optional
        text = render_metrics(summary, packages, counts() if counts is not None else None)
        return Response(200, text.encode("utf-8"), CONTENT_TYPE)

    def _openapi(self, *, query: str) -> Response:
        if self._openapi_body is None:
            if self._openapi_builder is None:
                from pytest_memtrack.server.openapi import build_document

                self._openapi_builder = build_document
            self._openapi_body = _dumps(self._openapi_builder())
        return Response(200, self._openapi_body)

    def _dashboard(self, *, query: str) -> Response:
        nonce = secrets.token_urlsafe(16)
        if self._dashboard_renderer is None:
            from pytest_memtrack.server.dashboard import render_dashboard

            self._dashboard_renderer = render_dashboard
        html = self._dashboard_renderer(self.source.get_memory_usage_summary(), self.mode, nonce, self.notes)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        return Response(200, html.encode("utf-8"), HTML_TYPE, [("Content-Security-Policy", csp)])


def parse_threshold(query: str, default: float) -> float:
    """The ``threshold`` query parameter: a number in [0, 1]; absent means ``default``; anything else is 400."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False, errors="strict",
                          max_num_fields=20)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "The query string is malformed.") from None
    values = params.get("threshold")
    if not values:
        return default
    if len(values) > 1:
        raise HttpError(400, "Give the threshold query parameter once.")
    raw = values[0]
    value = parse_decimal(raw)  # not float(): it reads "0_1" as 1.0 and "١" (an Arabic-Indic one) as 1.0
    if value is None or not 0.0 <= value <= 1.0:
        raise HttpError(400, f"The threshold must be a number between 0 and 1, not {_shorten(raw)!r}.")
    return value


def _decode_name(raw: str) -> str:
    try:
        name = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "The package name in the URL is not valid percent-encoded UTF-8.") from None
    if not name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise HttpError(400, "The package name in the URL is empty or contains control characters.")
    return name


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
