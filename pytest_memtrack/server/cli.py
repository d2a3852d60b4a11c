"""``pytest-memtrack serve REPORT.json``: a saved report over the spec's memory API, with the dashboard at ``/``.

The POST endpoints answer 409 there: a saved report cannot collect garbage or update metrics.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from pytest_memtrack.errors import CliError
from pytest_memtrack.options import TOKEN_ENV, HelpFormatter
from pytest_memtrack.report.loading import load_report
from pytest_memtrack.server.progress import SavedSession
from pytest_memtrack.server.sources import ReportSource
from pytest_memtrack.server.transport import DEFAULT_HOST, is_loopback, port_number, start_server
from pytest_memtrack.units import shown

EXAMPLES = f"""\
examples:
  # on this machine only; open http://127.0.0.1:8000/ in a browser
  pytest-memtrack serve reports/memtrack.json --port 8000
  # on every interface: every request must then carry the token
  {TOKEN_ENV}=change-me pytest-memtrack serve reports/memtrack.json \\
      --host 0.0.0.0
"""


def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a saved JSON report over the memory API (read-only) with a dashboard",
        description="Serve a saved JSON report over the spec's memory API and a dashboard at /. The POST "
                    "endpoints answer 409: a saved report cannot collect garbage or update metrics.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("report", metavar="REPORT.json", help="a JSON report written by pytest --memtrack-json")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}); another host needs a token")
    parser.add_argument("--port", default="8000", help="port to bind (default 8000; 0 picks a free port)")
    parser.add_argument("--token", default=None,
                        help="the report is read-only, so a token guards who may read it: every request must then "
                             "carry it, as 'Authorization: Bearer TOKEN' (in a browser: /?token=TOKEN); default: env "
                             f"{TOKEN_ENV}; required with a non-loopback --host")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    port = port_number(str(args.port))
    if port is None:
        raise CliError(f"--port must be a port number between 0 and 65535, not {shown(str(args.port))}.")
    token = (args.token or os.environ.get(TOKEN_ENV, "")).strip() or None
    if token is not None and any(ch.isspace() for ch in token):
        raise CliError("the token must not contain spaces.")
    host = args.host.strip().strip("[]")
    if not token and not is_loopback(host):
        raise CliError(f"serving on the non-loopback host {host!r} needs a token: give --token or set {TOKEN_ENV}.")
    source = ReportSource(report)
    try:
        running = start_server(source, host, port, token=token, mode="saved report",
                               default_threshold=source.default_threshold, verbose=args.verbose,
                               session=SavedSession(report, os.path.abspath(args.report)))
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
