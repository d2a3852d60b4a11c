"""The bundled HTTP server's transport: sockets and threads around the socket-free ``app.App``.

Secure by default: ``start_server`` binds 127.0.0.1 unless told otherwise, and any non-loopback host needs a
token, which the POST endpoints then require as ``Authorization: Bearer <token>``. No CORS headers are sent.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_memtrack.options import TOKEN_ENV
from pytest_memtrack.server.app import MAX_BODY_BYTES, App, HttpError, Response, error_response
from pytest_memtrack.server.progress import SessionSource
from pytest_memtrack.server.sources import DEFAULT_THRESHOLD, MemorySource

DEFAULT_HOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the :class:`App`, writes the :class:`Response`; every answer is JSON or HTML."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "pytest-memtrack"
    sys_version = ""
    disable_nagle_algorithm = True  # small answers: do not wait for the client's delayed ACK
    timeout = 30  # an idle keep-alive connection frees its thread after this many seconds
    error_content_type = "application/json; charset=utf-8"

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):  # every method reaches the router: 405 with Allow, never a 501 HTML page
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except HttpError as exc:
            self._write(exc.response())
            return
        self._write(self.server.app.handle(self.command, self.path, dict(self.headers.items()), body))

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: the client waits for our go-ahead before sending the body, so a request that
        will be refused anyway (too large, a bad length) gets its error now instead of ``100 Continue``."""
        try:
            self._body_length()
        except HttpError as exc:
            self._write(exc.response())
            return False
        return super().handle_expect_100()

    def _body_length(self) -> int:
        """The request body's length from the headers, or ``HttpError`` (then the connection closes: where this
        request ends, and so where the next one starts, is unknown)."""
        if self.headers.defects or self.headers.get_payload():
            # A header line without a colon: the standard parser stops there and drops every header after it
            # (Content-Length among them), which would leave the body to be read as the next request.
            raise HttpError(400, "A request header line is malformed (every header line needs 'Name: value').",
                            close=True)
        if len(self.headers.get_all("Host") or []) > 1:
            raise HttpError(400, "The request has more than one Host header.", close=True)
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(400, "Chunked request bodies are not supported; send a Content-Length.", close=True)
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1:  # one header per value, or several headers: the body's end would be a guess
            raise HttpError(400, "The request has Content-Length headers that disagree.", close=True)
        raw = values.pop()
        if not (raw.isascii() and raw.isdigit()):
            raise HttpError(400, "The Content-Length header is not a non-negative whole number.", close=True)
        if len(raw.lstrip("0")) > len(str(MAX_BODY_BYTES)) or int(raw) > MAX_BODY_BYTES:
            raise HttpError(413, f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.", close=True)
        return int(raw)

    def _read_body(self) -> bytes:
        length = self._body_length()
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise HttpError(400, "The request body is shorter than its Content-Length.", close=True)
        return body

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.all_headers():
            self.send_header(name, value)
        if response.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests caught by the standard parser (bad request line, huge headers): JSON, then close."""
        sentences = {400: "The request is malformed.", 414: "The request target is too long.",
                     431: "The request headers are too large.", 505: "This HTTP version is not supported."}
        text = sentences.get(code, "The request could not be handled.")
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # unparseable request line: still answer with a status line
        if not getattr(self, "command", None):
            self.command = "GET"  # so _write sends the body even when the request line was unreadable
        try:
            self._write(error_response(code, text, close=True))
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"pytest-memtrack server: {self.address_string()} {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of connections (clients retry after 1 s)

    def __init__(self, address: tuple[str, int], app: App, verbose: bool, family: int) -> None:
        self.address_family = family
        self.app = app
        self.verbose = verbose
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hold a new connection, before its thread starts, while the live session's hunt measures the process."""
        self.app.session.wait_quiet()
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return  # the client went away; nothing to report
        sys.stderr.write(f"pytest-memtrack server: error while talking to {client_address}: {exc!r}\n")


class RunningServer:
    """A server answering on a daemon thread; :meth:`stop` shuts it down and closes the socket."""

    def __init__(self, httpd: _Server) -> None:
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"
        self.app = httpd.app
        self.app.bind(self.host, self.port, loopback=is_loopback(self.host))
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="memtrack-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(source: MemorySource, host: str = DEFAULT_HOST, port: int = 0, *, token: str | None = None,
                 mode: str = "live", default_threshold: float = DEFAULT_THRESHOLD,
                 verbose: bool = False, notes: Sequence[str] = (),
                 session: SessionSource | None = None) -> RunningServer:
    """Bind ``host:port`` and serve ``source`` on a daemon thread. Raises ``OSError`` when it cannot bind and
    ``ValueError`` for a non-loopback host without a token."""
    if not token and not is_loopback(host):
        raise ValueError(f"Serving on the non-loopback host {host!r} needs a token (env {TOKEN_ENV}).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    app = App(source, token=token, mode=mode, default_threshold=default_threshold, notes=notes, session=session)
    return RunningServer(_Server((host, port), app, verbose, family))


def port_number(text: str) -> int | None:
    """A TCP port (0 to 65535) written in ASCII digits, else None: ``str.isdigit`` and ``int()`` also take
    ``'٨٠٠٠'`` (Arabic-Indic digits), and ``int()`` raises on 4,301 digits."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits.lstrip("0")) > 5:
        return None
    port = int(digits)
    return port if port <= 65535 else None


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (unresolvable names are not)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
