"""Nobody else writes the verdict: a page on another site, a rebound DNS name or a flood of requests cannot change
what the live server's session reports (server/access.py, LiveSource)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from test_server import P, request
from test_server_app import FakeSource

from pytest_memtrack.server.access import AccessRules, Refused, check, host_names
from pytest_memtrack.server.app import App
from pytest_memtrack.server.sources import LiveSource
from pytest_memtrack.server.transport import RunningServer, start_server
from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def live() -> Iterator[tuple[RunningServer, FakeSource]]:
    source = FakeSource()
    with start_server(source, "127.0.0.1", 0) as running:
        yield running, source


def headers_of(**values: str):
    lowered = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return lambda name: lowered.get(name.lower())


# -- the rules, as pure decisions ----------------------------------------------------------------------------------

def test_the_host_names_of_a_loopback_server_carry_its_port():
    assert host_names("127.0.0.1", 8123) == {"127.0.0.1:8123", "localhost:8123", "[::1]:8123"}
    assert "[::1]:9" in host_names("::1", 9) and "localhost" in host_names("127.0.0.1", 80)


@pytest.mark.parametrize(("method", "headers", "body", "status"), [
    ("GET", {"host": "attacker.example:8123"}, b"", 403),         # DNS rebinding
    ("GET", {}, b"", 403),                                        # no Host at all
    ("POST", {"host": "localhost:8123", "origin": "http://attacker.example"}, b"", 403),
    ("POST", {"host": "localhost:8123", "origin": "null"}, b"", 403),
    ("POST", {"host": "localhost:8123", "sec_fetch_site": "cross-site"}, b"", 403),
    ("POST", {"host": "localhost:8123", "content_type": "text/plain"}, b"x", 415),
    ("POST", {"host": "localhost:8123", "content_type": "application/x-www-form-urlencoded"}, b"", 415),
    ("POST", {"host": "localhost:8123"}, b"{}", 415),              # a body without a content type
])
def test_requests_from_elsewhere_are_refused(method, headers, body, status):
    with pytest.raises(Refused) as refused:
        check(AccessRules(hosts=host_names("127.0.0.1", 8123)), method, "", headers_of(**headers), body)
    assert refused.value.status == status and refused.value.message.endswith(".")


@pytest.mark.parametrize(("method", "headers", "body"), [
    ("GET", {"host": "127.0.0.1:8123"}, b""),
    ("GET", {"host": "LOCALHOST:8123", "origin": "http://attacker.example"}, b""),  # reads are same-origin-policed
    ("POST", {"host": "localhost:8123"}, b""),                                     # curl -X POST
    ("POST", {"host": "localhost:8123", "origin": "http://localhost:8123", "sec_fetch_site": "same-origin",
              "content_type": "application/json; charset=utf-8"}, b"{}"),
])
def test_the_servers_own_pages_and_local_clients_are_answered(method, headers, body):
    check(AccessRules(hosts=host_names("127.0.0.1", 8123)), method, "", headers_of(**headers), body)


# -- a real server on 127.0.0.1 -------------------------------------------------------------------------------------

def test_a_rebound_host_name_gets_nothing_from_the_live_server(live):
    running, source = live
    for method, target in (("GET", P + "summary"), ("GET", "/"), ("POST", P + "update-metrics")):
        status, _, body = request(running, method, target, headers={"Host": f"attacker.example:{running.port}",
                                                                     **JSON})
        assert status == 403 and b"Host header" in body
    assert request(running, "GET", P + "summary", headers={"Host": f"localhost:{running.port}"})[0] == 200
    assert source.updates == 0


def test_a_cross_site_write_changes_nothing_and_a_same_site_one_does(live):
    running, source = live
    origin = f"http://127.0.0.1:{running.port}"
    assert request(running, "POST", P + "update-metrics", headers={"Origin": "http://evil.test", **JSON})[0] == 403
    assert request(running, "POST", P + "update-metrics", body=b"x", headers={"Content-Type": "text/plain"})[0] == 415
    assert source.updates == 0
    assert request(running, "POST", P + "update-metrics", body=b"{}", headers={"Origin": origin, **JSON})[0] == 200
    assert source.updates == 1


def test_a_utf8_token_from_a_utf8_client_matches():
    token = "t\u00f6k\u20acn"
    with start_server(FakeSource(), "127.0.0.1", 0, token=token) as running:
        with socket.create_connection((running.host, running.port), timeout=10) as sock:
            sock.sendall(b"GET " + P.encode() + b"summary HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Authorization: Bearer " % running.port + token.encode("utf-8") + b"\r\n"
                         b"Connection: close\r\n\r\n")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_requests_from_outside_never_push_the_sessions_readings_out_of_the_history(monkeypatch):
    """650 update-metrics requests against a session whose package grows: its history and score stay its own."""
    loader = LazyLoader(history_size=20)
    previous = reset_lazy_loader(loader)
    try:
        info = loader.register("json")
        loader.load("json")
        for step in range(10):  # the session's readings: steady growth
            loader.record_readings({"json": 1_000_000.0 + step * 50_000}, timestamp=1000.0 + step)
        history = list(info.memory_metrics.memory_history)
        score = info.memory_metrics.memory_leak_score
        assert score > 0.1
        app = App(LiveSource())
        for _ in range(650):
            assert app.handle("POST", P + "update-metrics", {"Host": "x"}).status == 200
        assert list(info.memory_metrics.memory_history) == history
        assert info.memory_metrics.memory_leak_score == score
        assert info.memory_metrics.current_memory_usage != history[-1][1]  # the request's own reading was taken
    finally:
        reset_lazy_loader(previous)


# -- a real browser on another origin --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_page_on_another_origin_in_a_real_browser_cannot_write(live, tmp_path, browser):
    # conftest's one Chromium per test process (playwright's sync API allows one driver per thread)
    running, source = live
    target = f"http://127.0.0.1:{running.port}{P}update-metrics"
    (tmp_path / "attack.html").write_text(f"""<!doctype html><script>
      const url = {target!r};
      const sent = [];
      for (let i = 0; i < 20; i++) {{
        sent.push(fetch(url, {{method: "POST", mode: "no-cors", body: "x", headers: {{"Content-Type": "text/plain"}}}}));
        sent.push(fetch(url, {{method: "POST", mode: "no-cors"}}));
        sent.push(fetch(url, {{method: "POST", mode: "no-cors", body: new URLSearchParams({{a: "1"}})}}));
      }}
      Promise.allSettled(sent).then(() => {{ document.title = "done"; }});
    </script>""")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    # Another origin: the attacker's page is served by a second server, under another name and port.
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser.new_page()
        try:
            page.goto(f"http://localhost:{attacker.server_address[1]}/attack.html")
            page.wait_for_function("document.title === 'done'", timeout=20_000)
        finally:
            page.close()
    finally:
        attacker.shutdown()
        attacker.server_close()
    time.sleep(0.2)
    assert source.updates == 0
