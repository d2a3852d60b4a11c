"""The live server during a real session: ``pytest --memtrack --memtrack-serve=0`` in a subprocess.

How a test finds the live server: the plugin puts its URL in the environment variable ``MEMTRACK_SERVER_URL``
(``pytest_memtrack.server.URL_ENV``) for the whole session, and prints ``memtrack server: http://HOST:PORT/``.
The inner tests below read the variable, query the server over HTTP from inside the running session and save
what they got, so the outer test can check it against the schemas after the session ended.

Only the end-to-end run uses a subprocess (real process, real port, server stopped at exit); the option checks
run in-process, which is several times faster and exercises the same hooks.
"""

from __future__ import annotations

import html
import json
import socket
import urllib.parse
import urllib.request

import pytest
from test_server_app import validate

INNER_TESTS = '''
import json, os, pathlib, urllib.request

from pytest_memtrack.tracking.loader import get_lazy_loader

OUT = pathlib.Path(__file__).parent / "answers.json"
answers = {}


def fetch(path, method="GET"):
    url = os.environ["MEMTRACK_SERVER_URL"] + path.lstrip("/")
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"} if method == "POST" else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        return json.load(response)


def test_imports_a_package_so_the_session_tracks_it():
    import email.mime.text  # noqa: F401
    get_lazy_loader().register("json")


def test_the_live_server_answers_every_endpoint_while_the_tests_run():
    answers["url"] = os.environ["MEMTRACK_SERVER_URL"]
    answers["summary"] = fetch("/api/packages/memory/summary")
    answers["leaks"] = fetch("/api/packages/memory/leaks?threshold=0.1")
    answers["suggestions"] = fetch("/api/packages/memory/optimization-suggestions")
    answers["update_metrics"] = fetch("/api/packages/memory/update-metrics", "POST")
    answers["garbage_collection"] = fetch("/api/packages/memory/garbage-collection", "POST")
    names = get_lazy_loader().package_names()
    assert names, "the session's loader tracks at least one package"
    answers["package_info"] = fetch("/api/packages/memory/" + names[0])
    OUT.write_text(json.dumps(answers))
'''


#: Plugins the inner sessions do not need; schemathesis alone costs ~2.5 s of start-up per subprocess.
FAST = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:anyio")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_session_with_memtrack_serve_answers_http_from_its_own_tests_and_stops_at_the_end(pytester):
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("--memtrack", "--memtrack-serve=0", *FAST)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["memtrack server: http://127.0.0.1:*/"])
    answers = json.loads((pytester.path / "answers.json").read_text())
    for name in ("summary", "leaks", "suggestions", "update_metrics", "garbage_collection", "package_info"):
        validate("envelope", answers[name])
        validate(name, answers[name]["data"])
    assert answers["summary"]["data"]["total_packages"] >= 1
    port = int(answers["url"].rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_ini_value_memtrack_serve_starts_the_server_on_the_given_port(pytester):
    port = _free_port()
    pytester.makeini(f"[pytest]\nmemtrack_serve = 127.0.0.1:{port}\n")
    pytester.makepyfile(test_url=f"""
        import os
        def test_url():
            assert os.environ["MEMTRACK_SERVER_URL"] == "http://127.0.0.1:{port}/"
    """)
    result = pytester.runpytest("--memtrack", *FAST)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"memtrack server: http://127.0.0.1:{port}/"])


def test_without_memtrack_the_serve_option_starts_nothing(pytester):
    pytester.makepyfile(test_nothing="""
        import os
        def test_no_url():
            assert "MEMTRACK_SERVER_URL" not in os.environ
    """)
    result = pytester.runpytest("--memtrack-serve=0", *FAST)
    result.assert_outcomes(passed=1)
    assert "memtrack server:" not in result.stdout.str()


@pytest.mark.parametrize("args, message", [
    (["--memtrack-serve=abc"], "*--memtrack-serve must end with a port number between 0 and 65535, not 'abc'.*"),
    (["--memtrack-serve=0.0.0.0:0"], "*non-loopback host '0.0.0.0' needs a token*MEMTRACK_TOKEN*"),
    (["--memtrack-serve=0", "--memtrack-serve-token= "], "*--memtrack-serve-token must be a non-empty token*"),
])
def test_a_bad_serve_setting_is_a_usage_error_before_any_test_runs(pytester, monkeypatch, args, message):
    monkeypatch.delenv("MEMTRACK_TOKEN", raising=False)
    pytester.makepyfile(test_never="def test_never():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--memtrack", *args, *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() and "ran" not in result.stdout.str()


def test_a_port_of_4301_digits_in_the_ini_file_is_a_usage_error_naming_the_key(pytester):
    pytester.makeini("[pytest]\nmemtrack_serve = " + "1" * 4301 + "\n")
    pytester.makepyfile(test_never="def test_never():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--memtrack", *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini option 'memtrack_serve' must end with a port number between 0 and 65535, "
                                 "not '11111111111111111111'… (4,301 characters)."])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("args", [[], ["--memtrack-serve-token=a b"]])
def test_a_token_with_a_space_breaks_no_run_that_does_not_serve(pytester, monkeypatch, args):
    monkeypatch.setenv("MEMTRACK_TOKEN", "a b")
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    pytester.runpytest("--memtrack", *args, *FAST).assert_outcomes(passed=1)
    serving = pytester.runpytest("--memtrack", "--memtrack-serve=0", *args, *FAST)
    assert serving.ret == pytest.ExitCode.USAGE_ERROR
    label = "--memtrack-serve-token" if args else "environment variable MEMTRACK_TOKEN"
    serving.stderr.fnmatch_lines([f"ERROR: {label} must be a non-empty token without spaces."])


@pytest.mark.parametrize("workers", [None, "2"])
def test_under_xdist_the_dashboard_says_that_workers_report_their_packages_when_they_finish(pytester, workers):
    pytest.importorskip("xdist")
    from pytest_memtrack.server.plugin import XDIST_NOTE, server_url

    args = ["-n", workers] if workers else []
    config = pytester.parseconfigure("--memtrack", "--memtrack-serve=0", "-p", "xdist", *args, *FAST)
    url = server_url(config)
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
    assert ("workers report their packages when they finish" in page) is bool(workers)
    assert (html.escape(XDIST_NOTE) in page) is bool(workers)


def test_a_port_in_use_is_a_usage_error_naming_the_address(pytester):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        pytester.makepyfile(test_never="def test_never():\n    pass\n")
        result = pytester.runpytest("--memtrack", f"--memtrack-serve={port}", *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--memtrack-serve cannot listen on 127.0.0.1:{port}*"])


def test_a_token_from_the_environment_protects_the_post_endpoints_of_the_live_server(pytester, monkeypatch):
    monkeypatch.setenv("MEMTRACK_TOKEN", "live-secret")
    pytester.makepyfile(test_token="""
        import os, urllib.error, urllib.request

        def post(headers):
            url = os.environ["MEMTRACK_SERVER_URL"] + "api/packages/memory/update-metrics"
            request = urllib.request.Request(url, method="POST", data=b"{}",
                                             headers={"Content-Type": "application/json", **headers})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        def test_token():
            assert post({}) == 401
            assert post({"Authorization": "Bearer live-secret"}) == 200
    """)
    result = pytester.runpytest("--memtrack", "--memtrack-serve=0", *FAST)
    result.assert_outcomes(passed=1)


def test_a_report_written_by_a_real_session_is_served_with_valid_payloads(pytester):
    from test_server import GET_ENDPOINTS, P, request

    from pytest_memtrack.report.loading import load_report
    from pytest_memtrack.server.sources import ReportSource
    from pytest_memtrack.server.transport import start_server

    pytester.makepyfile(test_some="def test_json():\n    import json\n    assert json.dumps(1)\n")
    result = pytester.runpytest("--memtrack", "--memtrack-json=report.json", *FAST)
    result.assert_outcomes(passed=1)
    report = load_report(str(pytester.path / "report.json"))
    source = ReportSource(report)
    with start_server(source, "127.0.0.1", 0, mode="saved report") as running:
        for target, schema in GET_ENDPOINTS[:1] + GET_ENDPOINTS[2:]:
            status, _, body = request(running, "GET", target)
            assert status == 200, (target, body)
            validate(schema, json.loads(body)["data"])
        for name in source.package_names()[:5]:
            status, _, body = request(running, "GET", P + urllib.parse.quote(name, safe=""))
            assert status == 200
            validate("package_info", json.loads(body)["data"])


def test_the_live_source_follows_the_loader_the_session_installs():
    from pytest_memtrack.server.sources import LiveSource, MemorySource
    from pytest_memtrack.tracking.loader import LazyLoader, reset_lazy_loader

    first, second = LazyLoader(), LazyLoader()
    first.register("first.pkg")
    second.register("second.pkg")
    source = LiveSource()
    assert isinstance(source, MemorySource)
    previous = reset_lazy_loader(first)
    try:
        assert source.package_names() == ["first.pkg"]
        reset_lazy_loader(second)
        assert source.package_names() == ["second.pkg"]
        assert source.get_package_memory_info("second.pkg")["package_name"] == "second.pkg"
    finally:
        reset_lazy_loader(previous)
