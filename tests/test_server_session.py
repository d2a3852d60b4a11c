"""GET /api/session and the dashboard's live part: what a session tells, and that serving waits for a hunt."""

from __future__ import annotations

import json
import threading

import pytest
from samples import sample_report
from test_server_app import FakeSource, validate

from pytest_memtrack.server.app import App
from pytest_memtrack.server.progress import LiveSession

INNER = '''
import json, os, pathlib, urllib.request

import pytest

OUT = pathlib.Path(__file__).parent / "session.json"


def test_first():
    pass


@pytest.mark.max_leak_score(0.5)
def test_hunted_and_clean():
    pass


def test_asks_the_server_how_far_the_session_is():
    with urllib.request.urlopen(os.environ["MEMTRACK_SERVER_URL"] + "api/session", timeout=10) as response:
        OUT.write_text(json.dumps(json.load(response)))
'''


@pytest.mark.slow  # a session that hunts a test
def test_a_live_session_tells_how_many_tests_are_done_of_how_many_and_which_runs_now(pytester):
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("--memtrack", "--memtrack-serve=0", "-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    body = json.loads((pytester.path / "session.json").read_text())
    validate("envelope", body)
    validate("session", body["data"])
    data = body["data"]
    assert (data["state"], data["live"], data["tests_done"], data["tests_total"]) == ("running", True, 2, 3)
    assert data["current_test"] == "test_inner.py::test_asks_the_server_how_far_the_session_is"
    assert data["hunted"] == 1 and data["leaking"] == 0 and data["leaking_tests"] == []
    assert data["verdict"] == {"text": "No leaks found in the 1 hunted test", "tone": "good"}


def test_the_live_part_of_the_dashboard_is_a_fragment_without_script_or_style_and_closes_its_connection():
    response = App(FakeSource()).handle("GET", "/?part=live", {})
    html = response.body.decode()
    assert response.status == 200 and html.lstrip().startswith("<div id=\"live\"")
    assert "<script" not in html and "<style" not in html and "nonce" not in html
    assert dict(response.headers)["Content-Security-Policy"] == "default-src 'none'"
    assert response.close and App(FakeSource()).handle("GET", "/", {}).close


def test_while_a_hunt_measures_the_session_is_answered_only_after_it():
    session = LiveSession(FakeSource())
    app = App(FakeSource(), session=session)
    answers = []
    session.hunting(True)
    asking = threading.Thread(target=lambda: answers.append(app.handle("GET", "/api/session", {})))
    asking.start()
    asking.join(0.3)
    assert asking.is_alive() and answers == [], "held while the hunt measures"
    session.hunting(False)
    asking.join(10)
    assert [a.status for a in answers] == [200]


def test_once_finished_a_watched_live_session_is_told_so_before_its_server_stops():
    session = LiveSession(FakeSource())
    assert not session.linger(poll=0), "nobody watched: nothing to wait for"
    session.watched()  # a dashboard page was answered
    session.finished(sample_report(), ["/tmp/r.json"])
    session.watched()
    payload = session.payload()
    assert payload["state"] == "finished" and payload["reports"] == ["/tmp/r.json"]
    assert payload["tests_done"] == 3 and payload["verdict"]["text"] == "1 of 3 tests leak"
    assert session.linger(poll=0)


def test_the_dashboard_shows_the_twenty_highest_leak_groups_and_counts_the_rest():
    from samples import leaking_test

    from pytest_memtrack.server.progress import SavedSession

    report = sample_report()
    report["tests"] = [leaking_test(f"t.py::test_{i}") for i in range(25)]
    for i, test in enumerate(report["tests"]):
        test["hunt"]["evidence"]["allocation_sites"][0]["line"] = i  # 25 culprits
    html = App(FakeSource(), session=SavedSession(report)).handle("GET", "/", {}).body.decode()
    assert html.count('<article class="leak"') == 20
    assert "Leaking tests <span class=\"count\">(25)</span>" in html
    assert "5 more groups of leaking tests, with lower scores: the report lists them all." in html
