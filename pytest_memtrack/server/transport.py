"""The bundled HTTP server: the spec's memory API, live during a session or over a saved report.

* Live: ``pytest --memtrack --memtrack-serve=[HOST:]PORT`` (ini ``memtrack_serve``) serves the running session's
  lazy loader while the tests run. The bound URL is printed as ``memtrack server: http://HOST:PORT/``, put in
  the environment as ``MEMTRACK_SERVER_URL`` (so the session's own tests and their subprocesses can reach it)
  and returned by :func:`server_url`. Port 0 picks a free port.
* Saved report: ``pytest-memtrack serve REPORT.json [--host 127.0.0.1] [--port 8000]``; the POST endpoints
  answer 409 there.

Secure by default: binds 127.0.0.1; any other host must be given explicitly and then needs a token
(``--memtrack-serve-token`` / ``--token`` / env ``MEMTRACK_TOKEN``), which the POST endpoints require as
``Authorization: Bearer <token>`` (on loopback too, once a token is set). No CORS headers are sent at all.
Routing and the error model live in :mod:`pytest_memtrack.server.app`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pytest_memtrack.server.app import (
    DEFAULT_THRESHOLD,
    MAX_BODY_BYTES,
    App,
    HttpError,
    LiveSource,
    MemorySource,
    ReadOnlySource,
    ReportSource,
    Response,
    error_response,
)
from pytest_memtrack.settings import parse_score, resolve

__all__ = [
    "URL_ENV",
    "TOKEN_ENV",
    "MemorySource",
    "ReadOnlySource",
    "ReportSource",
    "LiveSource",
    "RunningServer",
    "add_cli",
    "configure",
    "parse_address",
    "render_dashboard",
    "server_url",
    "start_server",
]

#: Environment variable holding the live server's URL while the session runs (read it from a test).
URL_ENV = "MEMTRACK_SERVER_URL"
#: Environment variable holding the token when none is given on the command line.
from pytest_memtrack.options import TOKEN_ENV  # noqa: E402
DEFAULT_HOST = "127.0.0.1"

_SERVER_KEY: pytest.StashKey[RunningServer] = pytest.StashKey()


# -- HTTP transport -------------------------------------------------------------------------------------------

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
        self._write(self.server.app.handle(self.command, self.path, self.headers, body))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(400, "Chunked request bodies are not supported; send a Content-Length.", close=True)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw.strip())
        except ValueError:
            length = -1
        if length < 0 or not raw.strip().isdigit():
            raise HttpError(400, "The Content-Length header is not a non-negative whole number.", close=True)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.", close=True)
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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
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
                 verbose: bool = False) -> RunningServer:
    """Bind ``host:port`` and serve ``source`` on a daemon thread. Raises ``OSError`` when it cannot bind and
    ``ValueError`` for a non-loopback host without a token."""
    if not token and not is_loopback(host):
        raise ValueError(f"Serving on the non-loopback host {host!r} needs a token (env {TOKEN_ENV}).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    app = App(source, token=token, mode=mode, default_threshold=default_threshold)
    return RunningServer(_Server((host, port), app, verbose, family))


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
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


# -- dashboard --------------------------------------------------------------------------------------------------

_ENV: Any = None


def _format_bytes(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} GiB"  # pragma: no cover - the loop always returns


def render_dashboard(app: App, nonce: str) -> str:
    """The live dashboard page (``GET /``): the summary rendered now, refreshed by a poll every 2 s."""
    global _ENV
    if _ENV is None:
        import jinja2

        env = jinja2.Environment(loader=jinja2.PackageLoader("pytest_memtrack.report", "templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined)
        env.filters["bytes"] = _format_bytes
        env.filters["pathseg"] = lambda value: quote(str(value), safe="")
        _ENV = env
    summary = app.source.get_memory_usage_summary()
    from pytest_memtrack import __version__

    return _ENV.get_template("dashboard.html.j2").render(
        summary=summary, mode=app.mode, nonce=nonce, version=__version__, poll_ms=2000,
        summary_url="/api/packages/memory/summary", package_url="/api/packages/memory/")


# -- pytest wiring ------------------------------------------------------------------------------------------------

def parse_address(raw: str, label: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    text = raw.strip()
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise pytest.UsageError(f"{label} must be PORT, HOST:PORT or [IPv6]:PORT, not {raw!r}.")
        host, port_text = text[1:close], text[close + 2:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if not host:
            raise pytest.UsageError(f"{label} has an empty host in {raw!r}; give HOST:PORT, or only PORT to "
                                    f"serve on {DEFAULT_HOST}.")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise pytest.UsageError(f"{label} must end with a port number between 0 and 65535, not {raw!r}.")
    return host, int(port_text)


def _parse_token(raw: str, label: str) -> str:
    token = raw.strip()
    if not token or any(ch.isspace() for ch in token):
        raise pytest.UsageError(f"{label} must be a non-empty token without spaces.")
    return token


def configure(config: pytest.Config) -> None:
    """Validate the serve settings and start the live server (not on xdist workers: the controller serves)."""
    if hasattr(config, "workerinput"):
        return
    address = resolve(config, "memtrack_serve", parse_address, None)
    token = resolve(config, "memtrack_serve_token", _parse_token, None)
    if token is None and os.environ.get(TOKEN_ENV, "").strip():
        token = _parse_token(os.environ[TOKEN_ENV], f"environment variable {TOKEN_ENV}")
    if address is None:
        return
    host, port = address
    if not token and not is_loopback(host):
        raise pytest.UsageError(f"--memtrack-serve on the non-loopback host {host!r} needs a token: give "
                                f"--memtrack-serve-token or set {TOKEN_ENV}.")
    threshold = resolve(config, "memtrack_leak_threshold", parse_score, DEFAULT_THRESHOLD)
    try:
        running = start_server(LiveSource(), host, port, token=token, mode="live",
                               default_threshold=threshold, verbose=config.get_verbosity() >= 3)
    except OSError as exc:
        raise pytest.UsageError(f"--memtrack-serve cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    config.stash[_SERVER_KEY] = running
    config.pluginmanager.register(_LiveServerPlugin(config, running), "memtrack-server")


def server_url(config: pytest.Config) -> str | None:
    """The live server's URL (``http://127.0.0.1:PORT/``) in this session, or None when it does not serve."""
    running = config.stash.get(_SERVER_KEY, None)
    return running.url if running is not None else None


class _LiveServerPlugin:
    """Announces the URL, exports it as ``MEMTRACK_SERVER_URL`` and stops the server at the end."""

    def __init__(self, config: pytest.Config, running: RunningServer) -> None:
        self.config = config
        self.running = running
        self._previous_env = os.environ.get(URL_ENV)
        os.environ[URL_ENV] = running.url

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        line = f"memtrack server: {self.running.url}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.running.stop()
        if self._previous_env is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = self._previous_env
        if _SERVER_KEY in config.stash:
            del config.stash[_SERVER_KEY]


# -- CLI: pytest-memtrack serve REPORT.json -------------------------------------------------------------------------

def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a saved JSON report over the memory API (read-only) with a dashboard",
        description="Serve a saved JSON report over the spec's memory API and a dashboard at /. The POST "
                    "endpoints answer 409: a saved report cannot collect garbage or update metrics.")
    parser.add_argument("report", metavar="REPORT.json", help="a JSON report written by pytest --memtrack-json")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}); another host needs a token")
    parser.add_argument("--port", default="8000", help="port to bind (default 8000; 0 picks a free port)")
    parser.add_argument("--token", default=None, help=f"bearer token for the POST endpoints (default: env {TOKEN_ENV})")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.set_defaults(func=_cli_serve)


def load_report(path: str) -> dict[str, Any]:
    """Read a saved report, or raise ``CliError`` with a sentence."""
    from pytest_memtrack.cli import CliError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the report {path!r}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise CliError(f"{path!r} is not a UTF-8 JSON report.") from None
    try:
        report = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{path!r} is not valid JSON ({exc}).") from None
    missing = [key for key in ("summary", "suggestions", "packages")
               if not isinstance(report, dict) or not isinstance(report.get(key), dict)]
    if missing:
        raise CliError(f"{path!r} is not a pytest-memtrack JSON report (missing {', '.join(missing)}).")
    if report.get("format_version") != 1:
        raise CliError(f"{path!r} has report format version {report.get('format_version')!r}; this version of "
                       "pytest-memtrack reads version 1.")
    return report


def _cli_serve(args: argparse.Namespace) -> int:
    from pytest_memtrack.cli import CliError

    report = load_report(args.report)
    if not str(args.port).isdigit() or not 0 <= int(args.port) <= 65535:
        raise CliError(f"--port must be a port number between 0 and 65535, not {args.port!r}.")
    token = (args.token or os.environ.get(TOKEN_ENV, "")).strip() or None
    if token is not None and any(ch.isspace() for ch in token):
        raise CliError("the token must not contain spaces.")
    host = args.host.strip().strip("[]")
    if not token and not is_loopback(host):
        raise CliError(f"serving on the non-loopback host {host!r} needs a token: give --token or set {TOKEN_ENV}.")
    source = ReportSource(report)
    try:
        running = start_server(source, host, int(args.port), token=token, mode="saved report",
                               default_threshold=source.default_threshold, verbose=args.verbose)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}.") from None
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"memtrack server: {running.url}", flush=True)
    print(f"serving {args.report} (read-only); press Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0
