"""Who may ask the server what: pure decisions over a request's method, headers and query.

A server on 127.0.0.1 is reachable from every web page the user has open. So:

* **Host** (DNS rebinding): on a loopback bind the ``Host`` header must name this server — the bound address,
  ``localhost``, ``127.0.0.1`` or ``[::1]``, with the port — or the request is refused (403). A page on
  ``attacker.example`` whose name was rebound to 127.0.0.1 sends ``Host: attacker.example:PORT``.
* **Cross-site writes**: a POST whose ``Origin`` is not this server's, or that the browser marks
  ``Sec-Fetch-Site: cross-site``/``same-site``, is refused (403); a POST body must be JSON (415 otherwise), so
  no "simple" cross-site request (text/plain, a form) can write, with or without CORS.
* **Token**: when the server has one (required off loopback), every route needs it, the dashboard included:
  ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` in the URL (how a browser opens the dashboard; the page's
  own requests pass it on). Compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs

#: Header values are read through this: (name) -> value or None, case-insensitive.
HeaderGetter = Callable[[str], "str | None"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
JSON_TYPES = ("application/json",)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Refused(Exception):
    """A request the access rules refuse: ``status`` and a sentence for the client."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def host_names(bound_host: str, port: int) -> frozenset[str]:
    """The ``Host`` values that name a loopback server bound to ``bound_host:port`` (lower-case)."""
    bound = f"[{bound_host.strip('[]')}]" if ":" in bound_host else bound_host
    names = {bound.lower(), *LOOPBACK_NAMES}
    with_port = {f"{name}:{port}" for name in names}
    return frozenset(with_port | (names if port == 80 else set()))


@dataclass(frozen=True)
class AccessRules:
    """``hosts``: the accepted ``Host`` values (empty: any, as off loopback, where the token guards);
    ``token``: the bearer token every route then needs (None: none)."""

    hosts: frozenset[str] = frozenset()
    token: str | None = None

    def origins(self, host_header: str | None) -> frozenset[str]:
        """The ``Origin`` values that are this server itself."""
        names: Iterable[str] = self.hosts or ([host_header.lower()] if host_header else [])
        return frozenset(f"http://{name}" for name in names)


def check(rules: AccessRules, method: str, query: str, header: HeaderGetter, body: bytes) -> None:
    """Raise ``Refused`` when the rules refuse the request; return None when it may be answered."""
    host = (header("Host") or "").strip().lower()
    if rules.hosts and host not in rules.hosts:
        raise Refused(403, "The Host header does not name this server; use "
                           f"http://{sorted(rules.hosts)[0]}/ (a page on another site cannot reach it by a "
                           "name of its own).")
    if rules.token is not None:
        _check_token(rules.token, query, header)
    if method in _WRITE_METHODS:
        _check_same_origin(rules, host, header)
        content_type = (header("Content-Type") or "").split(";")[0].strip().lower()
        if (body or content_type) and content_type not in JSON_TYPES:
            raise Refused(415, "A request body must be JSON, sent with 'Content-Type: application/json'.")


def _check_same_origin(rules: AccessRules, host: str, header: HeaderGetter) -> None:
    fetch_site = (header("Sec-Fetch-Site") or "").strip().lower()
    if fetch_site in ("cross-site", "same-site"):
        raise Refused(403, "Writes from another site are refused: the browser marked this request "
                           f"'Sec-Fetch-Site: {fetch_site}'.")
    origin = header("Origin")
    if origin is not None and origin.strip().lower() not in rules.origins(host):
        raise Refused(403, f"Writes from another origin are refused ({origin.strip()[:100]!r} is not this server).")


def _check_token(token: str, query: str, header: HeaderGetter) -> None:
    challenge = [("WWW-Authenticate", 'Bearer realm="pytest-memtrack"')]
    supplied = header("Authorization")
    if supplied is not None:
        scheme, _, credentials = supplied.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Refused(401, "This server needs its token in an 'Authorization: Bearer <token>' header.", challenge)
        candidate = credentials.strip()
    else:
        values = parse_qs(query, keep_blank_values=True).get("token")
        if not values:
            raise Refused(401, "This server needs its token: send 'Authorization: Bearer <token>', or open the "
                               "dashboard as /?token=<token>.", challenge)
        candidate = values[0]
    if not hmac.compare_digest(_raw(candidate, from_header=supplied is not None), token.encode("utf-8")):
        raise Refused(401, "The token does not match the server's token.", challenge)


def _raw(value: str, *, from_header: bool) -> bytes:
    """The bytes the client sent: http.server decodes header values as ISO-8859-1, so a UTF-8 token comes back
    whole by encoding them the same way; a query value arrives decoded from UTF-8 percent-escapes."""
    if from_header:
        try:
            return value.encode("iso-8859-1")
        except UnicodeEncodeError:  # handed in as text (the socket-free app's callers)
            pass
    return value.encode("utf-8", "surrogateescape")
