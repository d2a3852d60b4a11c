"""Property-based API testing: schemathesis generates requests from our own OpenAPI document and checks the
answers of a real server (no 5xx, status codes and bodies as documented, JSON content type)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from samples import sample_report
from test_server_app import FakeSource

from pytest_memtrack.server.openapi import build_document
from pytest_memtrack.server.sources import ReportSource
from pytest_memtrack.server.transport import RunningServer, start_server

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 25


@pytest.fixture(params=["live", "saved report"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    source = FakeSource() if request.param == "live" else ReportSource(sample_report())
    with start_server(source, "127.0.0.1", 0, mode=request.param) as running:
        yield running


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation_in_our_own_openapi_document(server):
    schema = schemathesis.openapi.from_dict(build_document(server.url))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7  # the six JSON routes and /metrics
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url.rstrip("/"), timeout=10)
            case.validate_response(response, checks=CHECKS)

        check()


def test_a_get_on_a_post_only_name_is_the_405_the_package_route_documents(server):
    # GET .../garbage-collection reaches the POST-only route: 405, which {package_name} lists, so schemathesis
    # accepts it whenever it generates that name. The names of the GET routes are not {package_name} values.
    schema = schemathesis.openapi.from_dict(build_document(server.url))
    operation = next(result.ok() for result in schema.get_all_operations() if "{package_name}" in result.ok().path)
    for name in ("garbage-collection", "update-metrics"):
        case = operation.Case(path_parameters={"package_name": name})
        response = case.call(base_url=server.url.rstrip("/"), timeout=10)
        assert response.status_code == 405
        case.validate_response(response, checks=CHECKS)
    assert operation.definition.raw["parameters"][0]["schema"]["not"] == {
        "enum": ["summary", "leaks", "optimization-suggestions"]}
