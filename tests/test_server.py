"""The bundled server over real sockets: 127.0.0.1, port 0, a real HTTP client (http.client / raw sockets)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from samples import package_entry, sample_report
from test_server_app import FakeSource, validate

from pytest_memtrack import cli
from pytest_memtrack.server.plugin import parse_address
from pytest_memtrack.server.sources import ReportSource
from pytest_memtrack.server.transport import RunningServer, is_loopback, start_server

P = "/api/packages/memory/"
GET_ENDPOINTS = [(P + "summary", "summary"), (P + "app", "package_info"), (P + "leaks?threshold=0.1", "leaks"),
                 (P + "leaks", "leaks"), (P + "optimization-suggestions", "suggestions")]
POST_ENDPOINTS = [(P + "garbage-collection", "garbage_collection"), (P + "update-metrics", "update_metrics")]


def request(server: RunningServer | tuple[str, int], method: str, target: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = (server.host, server.port) if isinstance(server, RunningServer) else server
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def raw(server: RunningServer, data: bytes, *, half_close: bool = False) -> bytes:
    """Send bytes, read the answer until the server closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def live() -> Iterator[RunningServer]:
    with start_server(FakeSource(), "127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def saved() -> Iterator[RunningServer]:
    with start_server(ReportSource(sample_report()), "127.0.0.1", 0, mode="saved report") as running:
        yield running


def test_every_endpoint_of_a_live_server_answers_what_its_schema_describes(live):
    for method, endpoints in (("GET", GET_ENDPOINTS), ("POST", POST_ENDPOINTS)):
        for target, schema in endpoints:
            status, headers, body = request(live, method, target)
            assert status == 200, (target, body)
            assert headers["Content-Type"] == "application/json; charset=utf-8"
            assert headers["Cache-Control"] == "no-store"
            assert headers["Access-Control-Allow-Origin"] is None
            payload = json.loads(body)
            validate("envelope", payload)
            validate(schema, payload["data"])


def test_a_saved_report_serves_its_data_and_refuses_the_post_endpoints_with_409(saved):
    report = sample_report()
    status, _, body = request(saved, "GET", P + "summary")
    assert status == 200 and json.loads(body)["data"] == report["summary"]
    status, _, body = request(saved, "GET", P + "app")
    assert json.loads(body)["data"] == report["packages"]["app"]
    for target, schema in GET_ENDPOINTS:
        status, _, body = request(saved, "GET", target)
        assert status == 200
        validate(schema, json.loads(body)["data"])
    for target, _ in POST_ENDPOINTS:
        status, _, body = request(saved, "POST", target)
        assert status == 409
        validate("error", json.loads(body))
        assert "a saved report cannot" in json.loads(body)["error"]["message"].lower()


def test_the_dashboard_and_the_openapi_document_are_served(saved):
    status, headers, body = request(saved, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"memory dashboard" in body and b'data-poll="off"' in body, "a saved report: rendered once, not polled"
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    status, headers, body = request(saved, "GET", "/api/openapi.json")
    assert status == 200 and json.loads(body)["openapi"] == "3.1.0"


def test_head_answers_the_headers_of_get_without_a_body(saved):
    status, headers, body = request(saved, "HEAD", P + "summary")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method, target, status", [
    ("GET", P + "no-such-package", 404), ("GET", "/api/nothing", 404), ("GET", P + "leaks?threshold=abc", 400),
    ("GET", P + "leaks?threshold=-1", 400), ("GET", P + "leaks?threshold=1.5", 400),
    ("GET", P + "leaks?threshold=NaN", 400), ("GET", P + "leaks?threshold=inf", 400),
    ("GET", P + "%C3%28", 400), ("DELETE", P + "summary", 405), ("GET", P + "update-metrics", 405),
    ("PATCH", "/", 405),
])
def test_bad_requests_get_a_json_error_and_the_server_keeps_serving(live, method, target, status):
    got, headers, body = request(live, method, target)
    assert got == status
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    payload = json.loads(body)
    validate("error", payload)
    assert payload["error"]["code"] == status
    if status == 405:
        assert headers["Allow"] in ("GET, HEAD", "POST")
    assert request(live, "GET", P + "summary")[0] == 200


def test_a_body_over_64_kib_is_refused_with_413_before_it_is_read(live):
    status, headers, body = request(live, "POST", P + "update-metrics", body=b"x" * (64 * 1024 + 1))
    assert status == 413 and headers["Connection"] == "close"
    validate("error", json.loads(body))
    assert request(live, "POST", P + "update-metrics", body=b"{}" * 100,
                   headers={"Content-Type": "application/json"})[0] == 200


@pytest.mark.parametrize("data, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /api/packages/memory/summary HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/packages/memory/update-metrics HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /api/packages/memory/update-metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400),
    (b"POST /api/packages/memory/update-metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close"
     b"\r\n\r\nshort", 400),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
])
def test_malformed_requests_get_a_json_error_never_an_html_page(live, data, status):
    # A body shorter than its Content-Length: the server waits for the rest until our side ends the stream.
    answer = raw(live, data, half_close=data.endswith(b"short"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:200]
    assert b"application/json" in head
    validate("error", json.loads(body))
    assert request(live, "GET", P + "summary")[0] == 200


def first_answer(server: RunningServer, data: bytes) -> bytes:
    """Send bytes and read the status line and headers of the first answer only (the server may keep waiting)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    return answer


@pytest.mark.parametrize("headers, message", [
    (b"Content-Length: 2\r\nContent-Length: 30\r\n", b"Content-Length headers that disagree"),
    (b"Content-Length: 2, 30\r\n", b"not a non-negative whole number"),
    (b"Content-Length: \xd9\xa2\r\n", b"not a non-negative whole number"),  # an Arabic-Indic 2
    (b"X-Note no colon here\r\nContent-Length: 2\r\n", b"header line is malformed"),
    (b"Host: 127.0.0.1\r\nContent-Length: 2\r\n", b"more than one Host header"),
])
def test_headers_that_leave_the_body_length_in_doubt_are_a_400_and_close(live, headers, message):
    # Before: the first Content-Length won (a proxy may take the last: request smuggling), and a header line without
    # a colon silently ended the headers, dropping Content-Length, so the body was read as the next request.
    host = f"Host: 127.0.0.1:{live.port}\r\n".encode()
    data = (b"POST /api/packages/memory/update-metrics HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
            + headers + b"Connection: close\r\n\r\n{}")
    answer = raw(live, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"Connection: close" in head and message in body
    validate("error", json.loads(body))
    assert live.app.source.updates == 0


def test_expect_100_continue_over_the_size_limit_gets_413_instead_of_a_go_ahead(live):
    # Before: "100 Continue" went out first, so the client sent its whole oversized body just to hear 413.
    head = (f"POST /api/packages/memory/update-metrics HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            "Content-Type: application/json\r\nExpect: 100-continue\r\n").encode()
    answer = first_answer(live, head + b"Content-Length: 1000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"Connection: close" in answer
    assert first_answer(live, head + b"Content-Length: 2\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")


def test_every_endpoint_requires_the_token_when_one_is_set():
    source = FakeSource()
    with start_server(source, "127.0.0.1", 0, token="t0ken") as running:
        status, headers, _ = request(running, "POST", P + "garbage-collection")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert request(running, "POST", P + "garbage-collection", headers={"Authorization": "Bearer nope"})[0] == 401
        assert source.gc_calls == 0
        ok = request(running, "POST", P + "garbage-collection", headers={"Authorization": "Bearer t0ken"})
        assert ok[0] == 200 and source.gc_calls == 1
        assert request(running, "GET", P + "summary")[0] == 401
        assert request(running, "GET", "/")[0] == 401
        assert request(running, "GET", P + "summary", headers={"Authorization": "Bearer t0ken"})[0] == 200
        assert request(running, "GET", "/?token=t0ken")[0] == 200  # how a browser opens the dashboard


def test_a_non_loopback_host_without_a_token_is_refused():
    with pytest.raises(ValueError, match="needs a token"):
        start_server(FakeSource(), "0.0.0.0", 0)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("no-such-host.invalid")


def test_twenty_concurrent_requests_from_threads_all_succeed_with_valid_payloads(live):
    results: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()
    targets = [GET_ENDPOINTS[i % len(GET_ENDPOINTS)] for i in range(16)] + POST_ENDPOINTS * 2
    barrier = threading.Barrier(len(targets))

    def worker(target: str, method: str) -> None:
        barrier.wait(timeout=10)
        status, _, body = request(live, method, target)
        with lock:
            results.append((target, status, body))

    threads = [threading.Thread(target=worker, args=(t, "POST" if s in ("garbage_collection", "update_metrics")
                                                     else "GET")) for t, s in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(results) == 20
    schema_of = dict(GET_ENDPOINTS + POST_ENDPOINTS)
    for target, status, body in results:
        assert status == 200, (target, body)
        validate(schema_of[target], json.loads(body)["data"])


def test_keep_alive_serves_many_requests_on_one_connection(saved):
    conn = http.client.HTTPConnection(saved.host, saved.port, timeout=10)
    try:
        for _ in range(20):
            conn.request("GET", P + "summary")
            response = conn.getresponse()
            assert response.status == 200
            json.loads(response.read())
    finally:
        conn.close()


def test_a_stopped_server_releases_its_port():
    running = start_server(FakeSource(), "127.0.0.1", 0)
    port = running.port
    running.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_real_lazy_loader_is_served_with_valid_payloads_on_every_endpoint():
    loader_module = pytest.importorskip("pytest_memtrack.tracking.loader")
    loader = loader_module.LazyLoader()
    loader.register("json")
    for step in range(8):
        loader.record_readings({"leaky.pkg": 1_000_000.0 + 400_000 * step, "json": 50_000.0},
                               timestamp=1_000.0 + step)
    with start_server(loader, "127.0.0.1", 0) as running:
        for method, endpoints in (("GET", GET_ENDPOINTS[:1] + GET_ENDPOINTS[2:]), ("POST", POST_ENDPOINTS)):
            for target, schema in endpoints:
                status, _, body = request(running, method, target)
                assert status == 200, (target, body)
                validate(schema, json.loads(body)["data"])
        status, _, body = request(running, "GET", P + "leaky.pkg")
        assert status == 200
        validate("package_info", json.loads(body)["data"])
        assert json.loads(body)["data"]["package_name"] == "leaky.pkg"
        status, _, body = request(running, "GET", P + "leaks?threshold=0")
        assert "leaky.pkg" in [leak["package_name"] for leak in json.loads(body)["data"]["leaks"]]
        assert request(running, "GET", P + "not-registered")[0] == 404


@pytest.mark.parametrize("raw_value, expected", [
    ("0", ("127.0.0.1", 0)), ("8000", ("127.0.0.1", 8000)), ("localhost:9", ("localhost", 9)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8080", ("::1", 8080)),
])
def test_serve_addresses_parse_to_a_host_and_port_defaulting_to_loopback(raw_value, expected):
    assert parse_address(raw_value, "--memtrack-serve") == expected


@pytest.mark.parametrize("raw_value", ["", "abc", "70000", "-1", ":80", "host:", "[::1]8080", "1.5",
                                       "٨٠٠٠", "localhost:٨٠", "１２３", "0" * 6 + "80000"])
def test_a_bad_serve_address_is_a_usage_error_that_names_the_option(raw_value):
    # str.isdigit() and int() take Arabic-Indic and full-width digits: "٨٠٠٠" served on port 8000.
    with pytest.raises(pytest.UsageError, match="--memtrack-serve"):
        parse_address(raw_value, "--memtrack-serve")


def test_a_port_of_4301_digits_is_a_usage_error_not_a_value_error():
    # int() refuses strings of more than 4,300 digits with a ValueError of its own: an INTERNALERROR.
    with pytest.raises(pytest.UsageError) as caught:
        parse_address("1" * 4301, "--memtrack-serve")
    assert str(caught.value) == ("--memtrack-serve must end with a port number between 0 and 65535, not "
                                 "'11111111111111111111'… (4,301 characters).")


# -- the CLI: pytest-memtrack serve REPORT.json ------------------------------------------------------------------

@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    report = sample_report()
    report["packages"]["zope.interface"] = package_entry("zope.interface", 5_000.0)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


@contextlib.contextmanager
def serve_cli(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[tuple[str, int], list[str]]]:
    """Run ``python -m pytest_memtrack serve ...``; yield the (host, port) it printed and, after it stopped, its
    exit status and stderr in the list."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest_memtrack", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    outcome: list[str] = []
    with proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("memtrack server: http://127.0.0.1:"), line
            host, port = line.split("//", 1)[1].strip().rstrip("/").rsplit(":", 1)
            yield (host, int(port)), outcome
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
            outcome.extend([str(proc.returncode), err])


@pytest.mark.slow
def test_the_serve_command_serves_a_saved_report_until_terminated(report_file):
    with serve_cli(str(report_file), "--port", "0") as (address, outcome):
        status, _, body = request(address, "GET", P + "zope.interface")
        assert status == 200 and json.loads(body)["data"]["package_name"] == "zope.interface"
        for target, schema in GET_ENDPOINTS:
            status, _, body = request(address, "GET", target)
            validate(schema, json.loads(body)["data"])
        status, _, body = request(address, "POST", P + "garbage-collection")
        assert status == 409 and "cannot collect garbage" in json.loads(body)["error"]["message"]
    assert outcome[0] == "0" and "Traceback" not in outcome[1]


@pytest.mark.slow
def test_the_serve_command_with_a_token_requires_it_on_the_post_endpoints(report_file):
    with serve_cli(str(report_file), "--port", "0", env={"MEMTRACK_TOKEN": "abc123"}) as (address, _):
        assert request(address, "POST", P + "update-metrics")[0] == 401
        headers = {"Authorization": "Bearer abc123"}
        assert request(address, "POST", P + "update-metrics", headers=headers)[0] == 409


@pytest.mark.parametrize("setup, args, message", [
    (None, ["missing.json"], "cannot read the report"),
    ("{not json", ["bad.json"], "is not valid JSON"),
    ('{"summary": {}}', ["bad.json"], "is not a pytest-memtrack JSON report"),
    (None, ["REPORT", "--port", "99999"], "--port must be a port number"),
    (None, ["REPORT", "--port", "1" * 4301], "--port must be a port number between 0 and 65535, not "
                                             "'11111111111111111111'… (4,301 characters)."),
    (None, ["REPORT", "--port", "٨٠٠٠"], "--port must be a port number between 0 and 65535, not '٨٠٠٠'."),
    (None, ["REPORT", "--host", "0.0.0.0"], "needs a token"),
])
def test_the_serve_command_explains_a_user_mistake_in_one_sentence(tmp_path, report_file, capsys, monkeypatch,
                                                                  setup, args, message):
    monkeypatch.delenv("MEMTRACK_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "bad.json").write_text(setup)
    argv = ["serve", *[str(report_file) if a == "REPORT" else a for a in args]]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_serve_command_reports_a_port_that_is_taken(report_file, capsys):
    with start_server(FakeSource(), "127.0.0.1", 0) as running:
        assert cli.main(["serve", str(report_file), "--port", str(running.port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
