"""The API as a function (pytest_memtrack.server.app.App): routing, validation, errors, sources -- no sockets."""

from __future__ import annotations

import copy
import functools
import json
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from samples import package_entry, sample_report

from pytest_memtrack import schemas
from pytest_memtrack.server.app import App, HttpError, parse_threshold
from pytest_memtrack.server.sources import MemorySource, ReadOnlySource, ReportSource

P = "/api/packages/memory/"


@functools.cache
def _validator(name: str) -> Any:
    return schemas.validator(name)


def validate(name: str, instance: Any) -> None:
    """``schemas.validate`` with each validator built once (building one costs ~20 ms)."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(name).iter_errors(instance))
    if error is not None:
        raise error


class FakeSource(ReportSource):
    """An in-memory live source: a saved report whose POST endpoints work and count their calls."""

    def __init__(self, report: dict[str, Any] | None = None) -> None:
        super().__init__(report or sample_report())
        self.lock = threading.Lock()
        self.gc_calls = 0
        self.updates = 0

    def force_garbage_collection(self) -> dict[str, Any]:
        with self.lock:
            self.gc_calls += 1
        return {"memory_before": 2_000_000, "memory_after": 1_500_000, "memory_freed": 500_000,
                "objects_collected": 7, "garbage_collection_time": time.time()}

    def update_all_memory_metrics(self) -> dict[str, Any]:
        with self.lock:
            self.updates += 1
        return {"message": "Memory metrics updated for all packages", "update_time": time.time()}


def call(app: App, method: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = app.handle(method, target, headers or {})
    return response.status, response.json()


def test_every_json_endpoint_answers_in_the_envelope_that_its_schema_describes():
    app = App(FakeSource())
    for method, target, schema in [("GET", P + "summary", "summary"), ("GET", P + "app", "package_info"),
                                   ("GET", P + "leaks?threshold=0.1", "leaks"),
                                   ("GET", P + "optimization-suggestions", "suggestions"),
                                   ("POST", P + "garbage-collection", "garbage_collection"),
                                   ("POST", P + "update-metrics", "update_metrics")]:
        status, body = call(app, method, target)
        assert status == 200, (target, body)
        validate("envelope", body)
        validate(schema, body["data"])


def test_both_sources_satisfy_the_memory_source_protocol():
    assert isinstance(ReportSource(sample_report()), MemorySource)
    assert isinstance(FakeSource(), MemorySource)


def test_fixed_routes_win_over_a_package_of_the_same_name():
    report = sample_report()
    report["packages"]["summary"] = package_entry("summary", 1.0)
    app = App(ReportSource(report))
    status, body = call(app, "GET", P + "summary")
    assert status == 200 and "total_packages" in body["data"]
    status, body = call(app, "GET", P + "leaks")
    assert status == 200 and "total_leaks" in body["data"]


def test_a_dotted_percent_encoded_package_name_is_decoded_before_the_lookup():
    report = sample_report()
    report["packages"]["zope.interface"] = package_entry("zope.interface", 10.0)
    report["packages"]["名前 x"] = package_entry("名前 x", 10.0)
    app = App(ReportSource(report))
    assert call(app, "GET", P + "zope.interface")[1]["data"]["package_name"] == "zope.interface"
    assert call(app, "GET", P + "zope%2Einterface")[1]["data"]["package_name"] == "zope.interface"
    assert call(app, "GET", P + "%E5%90%8D%E5%89%8D%20x")[1]["data"]["package_name"] == "名前 x"


@pytest.mark.parametrize("target, status", [
    (P + "nope", 404), (P + "a/b", 404), (P, 404), ("/api/packages/memory", 404), ("/nothing", 404),
    (P + "summary/", 404), (P + "%ff", 400), (P + "%00x", 400), ("http://evil/x", 400),
])
def test_unknown_routes_and_malformed_names_get_a_json_error_with_their_status(target, status):
    got, body = call(App(FakeSource()), "GET", target)
    assert got == status
    validate("error", body)
    assert body["error"]["code"] == status
    assert body["error"]["message"].endswith(".")


@pytest.mark.parametrize("method, target, allow", [
    ("POST", P + "summary", "GET, HEAD"), ("DELETE", P + "app", "GET, HEAD"),
    ("GET", P + "garbage-collection", "POST"), ("PUT", P + "update-metrics", "POST"), ("BREW", "/", "GET, HEAD"),
])
def test_a_wrong_method_is_405_with_an_allow_header(method, target, allow):
    response = App(FakeSource()).handle(method, target, {})
    assert response.status == 405
    assert dict(response.headers)["Allow"] == allow
    validate("error", response.json())


@pytest.mark.parametrize("raw", ["abc", "-0.1", "1.01", "nan", "NaN", "inf", "-inf", "", "1e999", "0x1",
                                 "0_1", "%D9%A1", "%D9%A0.%D9%A5", "%EF%BC%91"])
def test_a_threshold_that_is_not_a_number_between_0_and_1_is_rejected(raw):
    # float() reads "0_1" as 1.0, and the Arabic-Indic "١" (%D9%A1) and the full-width "１" (%EF%BC%91) as 1.0.
    status, body = call(App(FakeSource()), "GET", P + "leaks?threshold=" + raw)
    assert status == 400
    assert "between 0 and 1" in body["error"]["message"]


def test_a_repeated_threshold_is_rejected():
    assert call(App(FakeSource()), "GET", P + "leaks?threshold=0.1&threshold=0.2")[0] == 400


@given(st.floats(min_value=0, max_value=1))
def test_any_threshold_in_the_unit_interval_is_accepted_and_echoed(value):
    assert parse_threshold(f"threshold={value!r}", 0.1) == value


@given(st.text(max_size=20))
def test_the_threshold_parser_answers_a_value_or_a_400_for_any_text(raw):
    try:
        value = parse_threshold("threshold=" + raw, 0.1)
    except HttpError as exc:
        assert exc.status == 400
    else:
        assert 0.0 <= value <= 1.0 and math.isfinite(value)


def test_saved_report_leaks_are_recomputed_for_any_threshold():
    report = sample_report()
    report["packages"]["json"]["memory_metrics"]["memory_leak_score"] = 0.3
    source = ReportSource(report)
    assert [leak["package_name"] for leak in source.get_memory_leaks_report(0.1)["leaks"]] == ["app", "json"]
    assert [leak["package_name"] for leak in source.get_memory_leaks_report(0.5)["leaks"]] == ["app"]
    assert source.get_memory_leaks_report(0.9)["total_leaks"] == 0
    zero = source.get_memory_leaks_report(0.0)
    assert zero["total_leaks"] == 2, "a zero score is never a leak, whatever the threshold"
    validate("leaks", zero)


def test_the_default_threshold_of_a_saved_report_is_the_one_it_was_written_with():
    report = sample_report()
    report["leaks"]["threshold"] = 0.7
    status, body = call(App(ReportSource(report), default_threshold=ReportSource(report).default_threshold),
                        "GET", P + "leaks")
    assert status == 200 and body["data"]["threshold"] == 0.7 and body["data"]["total_leaks"] == 0


def test_a_saved_report_answers_the_post_endpoints_with_409_and_a_sentence():
    app = App(ReportSource(sample_report()))
    for target, verb in [(P + "garbage-collection", "collect garbage"), (P + "update-metrics", "update metrics")]:
        status, body = call(app, "POST", target)
        assert status == 409
        validate("error", body)
        assert f"a saved report cannot {verb}" in body["error"]["message"].lower()
    with pytest.raises(ReadOnlySource):
        ReportSource(sample_report()).force_garbage_collection()


def test_with_a_token_every_endpoint_needs_the_bearer_token():
    source = FakeSource()
    app = App(source, token="s3cret")
    for headers in ({}, {"Authorization": "s3cret"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"},
                    {"authorization": "Bearer "}):
        response = app.handle("POST", P + "garbage-collection", headers)
        assert response.status == 401, headers
        assert dict(response.headers)["WWW-Authenticate"].startswith("Bearer")
    assert source.gc_calls == 0
    assert call(app, "POST", P + "garbage-collection", {"Authorization": "Bearer s3cret"})[0] == 200
    assert call(app, "POST", P + "update-metrics", {"authorization": "bearer s3cret"})[0] == 200
    assert call(app, "GET", P + "summary")[0] == 401
    assert call(app, "GET", P + "summary", {"Authorization": "Bearer s3cret"})[0] == 200
    assert call(app, "GET", P + "summary?token=s3cret")[0] == 200
    assert source.gc_calls == 1 and source.updates == 1


def test_a_failing_source_gives_a_generic_500_and_the_traceback_only_to_the_log():
    logged: list[str] = []

    class Broken(FakeSource):
        def get_memory_usage_summary(self) -> dict[str, Any]:
            raise RuntimeError("secret internal detail")

    app = App(Broken(), log=logged.append)
    response = app.handle("GET", P + "summary", {})
    assert response.status == 500
    validate("error", response.json())
    assert b"secret" not in response.body and b"Traceback" not in response.body
    assert "secret internal detail" in logged[0] and "Traceback" in logged[0]
    assert call(app, "GET", P + "app")[0] == 200, "one failure does not break the app"


def test_a_non_finite_number_from_the_source_is_a_500_rather_than_invalid_json():
    report = sample_report()
    report["summary"]["total_current_memory"] = math.inf
    response = App(ReportSource(report), log=lambda text: None).handle("GET", P + "summary", {})
    assert response.status == 500
    json.loads(response.body)


def test_every_response_is_uncached_and_sends_no_cors_header():
    app = App(FakeSource())
    for method, target in [("GET", P + "summary"), ("GET", P + "nope"), ("GET", "/"), ("GET", "/api/openapi.json")]:
        headers = dict(app.handle(method, target, {}).all_headers())
        assert headers["Cache-Control"] == "no-store"
        assert not any(name.lower().startswith("access-control-") for name in headers)


def test_the_dashboard_escapes_hostile_package_names_and_carries_a_csp_nonce():
    report = sample_report()
    hostile = '<script>alert("x")</script>'
    report["summary"]["packages_with_leaks"][0]["package_name"] = hostile
    response = App(ReportSource(report), mode="saved report").handle("GET", "/", {})
    html = response.body.decode()
    assert response.status == 200 and response.content_type.startswith("text/html")
    assert hostile not in html and "&lt;script&gt;" in html
    csp = dict(response.headers)["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert html.count(f'nonce="{nonce}"') == 2
    assert "/api/packages/memory/summary" in html and "2000" in html


def test_the_dashboard_shows_the_apps_notes_under_its_title():
    note = "Under pytest-xdist <workers> report their packages when they finish."
    html = App(FakeSource(), notes=[note]).handle("GET", "/", {}).body.decode()
    assert '<p class="note" role="note">Under pytest-xdist &lt;workers&gt; report their packages when they finish.</p>' \
        in html
    assert 'class="note"' not in App(FakeSource()).handle("GET", "/", {}).body.decode()


def test_the_package_route_documents_405_and_leaves_out_the_names_of_the_get_routes():
    document = App(FakeSource()).handle("GET", "/api/openapi.json", {}).json()
    operation = document["paths"][P + "{package_name}"]["get"]
    assert "405" in operation["responses"] and "POST-only" in operation["responses"]["405"]["description"]
    jsonschema = pytest.importorskip("jsonschema")
    name_schema = jsonschema.Draft202012Validator(operation["parameters"][0]["schema"])
    # GET .../summary answers the summary, not package info: a name a client may not send to this route.
    for route in ("summary", "leaks", "optimization-suggestions"):
        assert not name_schema.is_valid(route)
    for name in ("garbage-collection", "update-metrics", "app", "zope.interface"):
        assert name_schema.is_valid(name)
    for name in ("garbage-collection", "update-metrics"):
        assert App(FakeSource()).handle("GET", P + name, {}).status == 405


def test_the_openapi_document_names_every_endpoint_and_resolves_every_reference():
    response = App(FakeSource()).handle("GET", "/api/openapi.json", {})
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {P + name for name in (
        "summary", "leaks", "optimization-suggestions", "garbage-collection", "update-metrics", "{package_name}")} | {
        "/metrics"}
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref
    metrics = document["paths"].pop("/metrics")["get"]["responses"]["200"]["content"]
    assert metrics == {"text/plain": {"schema": {"type": "string"}}}
    for path in document["paths"].values():
        for operation in path.values():
            assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "_response")
            assert operation["responses"]["500"]["content"]["application/json"]["schema"]["$ref"].endswith("/error")


def test_the_openapi_envelopes_accept_real_answers_and_reject_a_wrong_payload():
    jsonschema = pytest.importorskip("jsonschema")
    document = App(FakeSource()).handle("GET", "/api/openapi.json", {}).json()
    root = copy.deepcopy(document)
    root["$ref"] = "#/components/schemas/summary_response"
    good = call(App(FakeSource()), "GET", P + "summary")[1]
    jsonschema.Draft202012Validator(root).validate(good)
    bad = {"status": "success", "data": {"total_packages": "three"}}
    assert not jsonschema.Draft202012Validator(root).is_valid(bad)
