"""pytest wiring of the live server: ``pytest --memtrack --memtrack-serve=[HOST:]PORT`` (ini ``memtrack_serve``).

The session's lazy loader is served while the tests run. The bound URL is printed as ``memtrack server:
http://HOST:PORT/``, put in the environment as ``MEMTRACK_SERVER_URL`` (so the session's own tests and their
subprocesses can reach it) and returned by :func:`server_url`. Port 0 picks a free port. Not on xdist workers:
the controller serves.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the HTTP server (http.server, ssl: ~15 ms) and the live session are imported only to serve
    from pytest_memtrack.server.progress import LiveSession
    from pytest_memtrack.server.transport import RunningServer

from pytest_memtrack.options import TOKEN_ENV
from pytest_memtrack.settings import parse_score, resolve
from pytest_memtrack.units import shown

#: Environment variable holding the live server's URL while the session runs (read it from a test).
URL_ENV = "MEMTRACK_SERVER_URL"

_SERVER_KEY: pytest.StashKey[RunningServer] = pytest.StashKey()

#: The dashboard's line under pytest-xdist. The controller serves, but the tests (and their imports) run in the
#: workers, whose packages reach the controller only with each worker's last message and are merged into the report
#: when the session ends (``session.pytest_sessionfinish``): until then the API and the page list none of them.
XDIST_NOTE = ("Under pytest-xdist the tests run in worker processes: workers report their packages when they "
              "finish, and the session merges them into its report when it ends, so this live page does not list "
              "them meanwhile (the JSON and HTML reports do).")


def under_xdist(config: pytest.Config) -> bool:
    """Whether this (controller) session hands its tests to xdist workers (``-n N`` with N > 0, or ``--tx``)."""
    return bool(getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None))


def parse_address(raw: str, label: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    from pytest_memtrack.server.transport import DEFAULT_HOST, port_number

    text = raw.strip()
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise pytest.UsageError(f"{label} must be PORT, HOST:PORT or [IPv6]:PORT, not {shown(raw)}.")
        host, port_text = text[1:close], text[close + 2:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if not host:
            raise pytest.UsageError(f"{label} has an empty host in {shown(raw)}; give HOST:PORT, or only PORT to "
                                    f"serve on {DEFAULT_HOST}.")
    port = port_number(port_text)
    if port is None:
        raise pytest.UsageError(f"{label} must end with a port number between 0 and 65535, not {shown(raw)}.")
    return host, port


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
    if address is None:  # the token matters only to a server: a stray MEMTRACK_TOKEN must not break other runs
        return
    token = resolve(config, "memtrack_serve_token", _parse_token, None)
    if token is None and os.environ.get(TOKEN_ENV, "").strip():
        token = _parse_token(os.environ[TOKEN_ENV], f"environment variable {TOKEN_ENV}")
    host, port = address
    from pytest_memtrack.server.progress import LiveSession, ProgressHooks
    from pytest_memtrack.server.sources import DEFAULT_THRESHOLD, LiveSource
    from pytest_memtrack.server.transport import is_loopback, start_server

    if not token and not is_loopback(host):
        raise pytest.UsageError(f"--memtrack-serve on the non-loopback host {host!r} needs a token: give "
                                f"--memtrack-serve-token or set {TOKEN_ENV}.")
    threshold = resolve(config, "memtrack_leak_threshold", parse_score, DEFAULT_THRESHOLD)
    session = config.pluginmanager.get_plugin("memtrack-session")  # its tests, for /metrics
    recorder = getattr(session, "recorder", None)
    source = LiveSource(recorder.tests if recorder is not None else None)
    progress = LiveSession(source, threshold)
    try:
        running = start_server(source, host, port, token=token, mode="live",
                               default_threshold=threshold, verbose=config.get_verbosity() >= 3,
                               notes=(XDIST_NOTE,) if under_xdist(config) else (), session=progress)
    except OSError as exc:
        raise pytest.UsageError(f"--memtrack-serve cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    # Render the page once now: compiling its templates while a hunted test runs would be charged to that test.
    from pytest_memtrack.server.dashboard import render_dashboard

    render_dashboard(progress, "live", "warm-up")
    config.stash[_SERVER_KEY] = running
    config.pluginmanager.register(_LiveServerPlugin(config, running, progress), "memtrack-server")
    config.pluginmanager.register(ProgressHooks(progress, config), "memtrack-server-progress")


def server_url(config: pytest.Config) -> str | None:
    """The live server's URL (``http://127.0.0.1:PORT/``) in this session, or None when it does not serve."""
    running = config.stash.get(_SERVER_KEY, None)
    return running.url if running is not None else None


class _LiveServerPlugin:
    """Announces the URL, exports it as ``MEMTRACK_SERVER_URL`` and stops the server at the end."""

    def __init__(self, config: pytest.Config, running: RunningServer, progress: LiveSession) -> None:
        self.config = config
        self.running = running
        self.progress = progress
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
        self.progress.linger()  # an open dashboard gets to show "finished" before the server goes
        self.running.stop()
        if self._previous_env is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = self._previous_env
        if _SERVER_KEY in config.stash:
            del config.stash[_SERVER_KEY]
