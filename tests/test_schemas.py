"""The JSON Schemas in pytest_memtrack/schemas accept the spec's payloads and the documented report, and nothing looser."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

jsonschema = pytest.importorskip("jsonschema")

from jsonschema import Draft202012Validator, ValidationError  # noqa: E402

from pytest_memtrack import schemas  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO_ROOT / "pytest_memtrack" / "schemas"

# --- The response examples of the spec's "API Endpoints" section, copied verbatim. ---------------------------------

SUMMARY_RESPONSE = """
{
  "status": "success",
  "data": {
    "total_current_memory": 104857600,
    "total_peak_memory": 157286400,
    "total_memory_footprint": 83886080,
    "packages_with_leaks": [
      {
        "package_name": "torch",
        "leak_score": 0.3,
        "trend": "increasing",
        "growth_rate": 1048576
      }
    ],
    "memory_trends": {"increasing": 1, "decreasing": 0, "stable": 2},
    "memory_pressure_levels": {"low": 2, "medium": 1, "high": 0, "critical": 0},
    "system_memory_pressure": "low",
    "total_packages": 3,
    "loaded_packages": 2
  }
}
"""

PACKAGE_INFO_RESPONSE = """
{
  "status": "success",
  "data": {
    "package_name": "torch",
    "memory_metrics": {
      "current_memory_usage": 52428800,
      "peak_memory_usage": 78643200,
      "memory_footprint": 31457280,
      "memory_leak_score": 0.2,
      "memory_trend": "stable",
      "memory_pressure_level": "low",
      "memory_growth_rate": 0,
      "average_memory_usage": 47185920,
      "memory_variance": 5242880,
      "memory_check_count": 10,
      "last_memory_check": 1703123456.789,
      "memory_history_length": 50
    },
    "is_loaded": true,
    "status": "loaded"
  }
}
"""

LEAKS_RESPONSE = """
{
  "status": "success",
  "data": {
    "leaks": [
      {
        "package_name": "torch",
        "leak_score": 0.4,
        "memory_trend": "increasing",
        "memory_growth_rate": 2097152,
        "current_memory_usage": 104857600,
        "peak_memory_usage": 157286400,
        "memory_footprint": 52428800,
        "memory_check_count": 15,
        "last_memory_check": 1703123456.789
      }
    ],
    "total_leaks": 1,
    "threshold": 0.1,
    "detection_time": 1703123456.789
  }
}
"""

SUGGESTIONS_RESPONSE = """
{
  "status": "success",
  "data": {
    "suggestions": [
      {
        "type": "memory_leak",
        "package_name": "torch",
        "severity": "high",
        "message": "Package 'torch' shows signs of memory leak (score: 0.40)",
        "recommendation": "Investigate memory usage patterns and consider reloading",
        "value": 0.4
      },
      {
        "type": "high_memory_footprint",
        "package_name": "transformers",
        "severity": "medium",
        "message": "Package 'transformers' has high memory footprint: 150.0MB",
        "recommendation": "Consider unloading if not frequently used",
        "value": 157286400
      }
    ],
    "total_suggestions": 2,
    "high_severity": 1,
    "medium_severity": 1,
    "low_severity": 0,
    "generation_time": 1703123456.789
  }
}
"""

GARBAGE_COLLECTION_RESPONSE = """
{
  "status": "success",
  "data": {
    "memory_before": 209715200,
    "memory_after": 157286400,
    "memory_freed": 52428800,
    "objects_collected": 25,
    "garbage_collection_time": 1703123456.789
  }
}
"""

UPDATE_METRICS_RESPONSE = """
{
  "status": "success",
  "data": {
    "message": "Memory metrics updated for all packages",
    "update_time": 1703123456.789
  }
}
"""

SPEC_RESPONSES = {
    "summary": SUMMARY_RESPONSE,
    "package_info": PACKAGE_INFO_RESPONSE,
    "leaks": LEAKS_RESPONSE,
    "suggestions": SUGGESTIONS_RESPONSE,
    "garbage_collection": GARBAGE_COLLECTION_RESPONSE,
    "update_metrics": UPDATE_METRICS_RESPONSE,
}
PAYLOAD_NAMES = list(SPEC_RESPONSES)


def spec_data(name: str) -> dict[str, Any]:
    """A fresh copy of the ``data`` of the spec example for payload ``name``."""
    return json.loads(SPEC_RESPONSES[name])["data"]


def errors(name: str, instance: Any) -> list[ValidationError]:
    return list(schemas.validator(name).iter_errors(instance))


def full_report() -> dict[str, Any]:
    """A report following docs/report-format.md, built from the spec examples."""
    return {
        "format_version": 1,
        "tool": {"name": "pytest-memtrack", "version": "0.1.0"},
        "run": {
            "started": 1764100000.0,
            "finished": 1764100012.5,
            "duration": 12.5,
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux-6.1-x86_64",
            "machine": "x86_64",
            "hostname": "ci-runner-1",
            "pid": 1234,
            "argv": ["pytest", "--memtrack"],
            "rootdir": "/path/to/project",
            "workers": 0,
            "interrupted": False,
            "exitstatus": 0,
            "config": {"max_leak_score": 0.1, "leak_threshold": 0.1, "report_json": "memtrack.json"},
        },
        "summary": spec_data("summary"),
        "leaks": spec_data("leaks"),
        "suggestions": spec_data("suggestions"),
        "packages": {"torch": spec_data("package_info")},
        "package_histories": {"torch": [[1764100001.0, 12345], [1764100002.0, 12400]]},
        "tests": [
            {
                "nodeid": "tests/test_app.py::test_cache",
                "outcome": "failed",
                "duration": 0.012,
                "worker": None,
                "rss_before": 51200000,
                "rss_after": 51300000,
                "rss_delta": 100000,
                "leak_score": 0.83,
                "limit": 0.1,
                "leaking": True,
                "hunt": {
                    "runs": 6,
                    "warmup_runs": 2,
                    "readings": [
                        {"traced": 1000, "blocks": 10, "rss": 51200000, "fds": 12, "threads": 1, "objects": 50000},
                        {"traced": 52234, "blocks": 11, "rss": 51300000, "fds": 12, "threads": 1, "objects": 50001},
                    ],
                    "kinds": {
                        "memory": {"leaking": True, "score": 0.83, "per_run": 51234.0},
                        "native": {"leaking": False, "score": 0.0, "per_run": 0.0},
                        "fds": {"leaking": False, "score": 0.0, "per_run": 0.0},
                        "threads": {"leaking": False, "score": 0.0, "per_run": 0.0},
                    },
                    "evidence": {
                        "allocation_sites": [
                            {"file": "app/cache.py", "line": 12, "bytes_per_run": 51200.0, "count_per_run": 1.0}
                        ],
                        "packages": [{"package": "app", "bytes_per_run": 51200.0}],
                        "object_types": [{"type": "bytes", "count_per_run": 1.0}],
                        "new_threads": ["Thread-3 (worker)"],
                        "new_fds": ["/tmp/x.log"],
                    },
                    "error": None,
                },
                "message": "tests/test_app.py::test_cache leaks memory: score 0.83 > limit 0.1",
            },
            {
                "nodeid": "tests/test_app.py::test_plain",
                "outcome": "passed",
                "duration": 0.001,
                "worker": "gw0",
                "rss_before": 51300000,
                "rss_after": 51290000,
                "rss_delta": -10000,
                "leak_score": None,
                "limit": None,
                "leaking": False,
                "hunt": None,
                "message": None,
            },
        ],
        "comparison": None,
    }


# --- Every schema file is well-formed. ---------------------------------------------------------------------------


def test_schema_names_list_exactly_the_json_files_in_the_package() -> None:
    assert sorted(schemas.SCHEMA_NAMES) == sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))


@pytest.mark.parametrize("name", schemas.SCHEMA_NAMES)
def test_each_schema_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = schemas.load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", schemas.SCHEMA_NAMES)
def test_each_schema_has_an_id_under_the_base_uri_named_after_its_file(name: str) -> None:
    assert schemas.load_schema(name)["$id"] == f"{schemas.BASE_URI}{name}.json"


@pytest.mark.parametrize("name", schemas.SCHEMA_NAMES)
def test_every_reference_in_every_schema_resolves_through_the_registry(name: str) -> None:
    # Building a validator does not resolve refs, so walk the schema and resolve each one explicitly.
    schema = schemas.load_schema(name)
    resolver = schemas.registry().resolver(base_uri=schema["$id"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolver.lookup(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_load_schema_accepts_the_name_with_or_without_the_json_suffix() -> None:
    assert schemas.load_schema("summary") == schemas.load_schema("summary.json")


def test_load_schema_returns_a_fresh_copy_each_time() -> None:
    first = schemas.load_schema("summary")
    first["required"].clear()
    assert schemas.load_schema("summary")["required"]


def test_load_schema_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.load_schema("nope")


@pytest.mark.slow
def test_importing_the_schemas_and_loading_one_does_not_need_jsonschema() -> None:
    code = (
        "import sys\n"
        "sys.modules['jsonschema'] = None\n"
        "sys.modules['referencing'] = None\n"
        "from pytest_memtrack import schemas\n"
        "assert schemas.load_schema('report')['title']\n"
        "assert 'jsonschema' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- Spec-defined payloads are exact: every key required, no extra key, at every level. -----------------------------
# Our additions are optional keys, listed here by the object that carries them, so a client written against the
# spec's payloads validates unchanged.
ADDITIVE = {("package_info", "/"): {"leak_tests", "forecast"}, ("leaks", "/properties/leaks/items"): {"tests"},
            ("summary", "/"): {"process_memory_usage", "process_forecast", "auto_unload"},
            ("summary", "/properties/packages_with_leaks/items"): {"forecast"}}


def object_schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every sub-schema that declares ``properties``, with a JSON-pointer-ish path."""
    found = []
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":
            found.append((path or "/", node))
        for key, value in node.items():
            found.extend(object_schemas(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(object_schemas(value, f"{path}/{index}"))
    return found


@pytest.mark.parametrize("name", [*PAYLOAD_NAMES, "error"])
def test_every_object_in_a_spec_payload_requires_all_its_keys_and_forbids_others(name: str) -> None:
    found = object_schemas(schemas.load_schema(name))
    assert found
    for path, node in found:
        assert node.get("additionalProperties") is False, path
        optional = ADDITIVE.get((name, path), set())
        assert sorted(node["required"]) == sorted(set(node["properties"]) - optional), path


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_the_schema_keys_are_exactly_the_keys_of_the_spec_example(name: str) -> None:
    def key_tree(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: key_tree(v) for k, v in value.items()}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return [key_tree(value[0])]
        return None

    def schema_tree(node: dict[str, Any]) -> Any:
        if "properties" in node:
            return {k: schema_tree(v) for k, v in node["properties"].items()
                    if k in node.get("required", node["properties"])}
        if node.get("type") == "array" and "properties" in node.get("items", {}):
            return [schema_tree(node["items"])]
        return None

    assert schema_tree(schemas.load_schema(name)) == key_tree(spec_data(name))


# --- The spec's examples validate. -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_the_spec_example_data_validates_against_its_payload_schema(name: str) -> None:
    schemas.validate(name, spec_data(name))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_the_whole_spec_example_response_validates_against_the_success_envelope(name: str) -> None:
    schemas.validate("envelope", json.loads(SPEC_RESPONSES[name]))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_the_envelope_def_for_a_payload_checks_the_data_too(name: str) -> None:
    check = Draft202012Validator({"$ref": f"envelope.json#/$defs/{name}"}, registry=schemas.registry())
    response = json.loads(SPEC_RESPONSES[name])
    check.validate(response)
    response["data"] = {}
    assert not check.is_valid(response)


def test_the_envelope_rejects_an_error_status_and_extra_keys() -> None:
    assert errors("envelope", {"status": "error", "data": {}})
    assert errors("envelope", {"status": "success", "data": {}, "extra": 1})
    assert errors("envelope", {"status": "success"})


def test_an_error_response_validates_against_the_error_schema() -> None:
    schemas.validate("error", {"status": "error", "error": {"code": 404, "message": "Package 'nope' not found"}})
    schemas.validate("error", {"status": "error", "error": {"code": 500, "message": "boom"}})


@pytest.mark.parametrize(
    "error",
    [
        {"code": 200, "message": "ok"},
        {"code": 600, "message": "x"},
        {"code": 404.5, "message": "x"},
        {"code": "404", "message": "x"},
        {"code": 404},
        {"message": "x"},
        {"code": 404, "message": None},
        {"code": 404, "message": "x", "detail": "y"},
    ],
)
def test_the_error_schema_rejects_a_malformed_error_object(error: dict[str, Any]) -> None:
    assert errors("error", {"status": "error", "error": error})


def test_the_error_schema_rejects_a_success_status() -> None:
    assert errors("error", {"status": "success", "error": {"code": 404, "message": "x"}})


def test_nullable_metrics_may_be_null_in_package_info_and_leaks() -> None:
    info = spec_data("package_info")
    for key in ("current_memory_usage", "peak_memory_usage", "memory_footprint", "last_memory_check"):
        info["memory_metrics"][key] = None
    schemas.validate("package_info", info)

    leaks = spec_data("leaks")
    for key in ("current_memory_usage", "peak_memory_usage", "memory_footprint", "last_memory_check"):
        leaks["leaks"][0][key] = None
    schemas.validate("leaks", leaks)


@pytest.mark.parametrize("key", ["memory_leak_score", "memory_growth_rate", "average_memory_usage", "memory_check_count"])
def test_non_nullable_metrics_may_not_be_null(key: str) -> None:
    info = spec_data("package_info")
    info["memory_metrics"][key] = None
    assert errors("package_info", info)


def test_a_system_wide_suggestion_has_a_null_package_name_and_any_type_string() -> None:
    data = spec_data("suggestions")
    data["suggestions"].append(
        {
            "type": "system_memory_pressure",
            "package_name": None,
            "severity": "low",
            "message": "System memory pressure is medium",
            "recommendation": "Consider forcing garbage collection",
            "value": 0.72,
        }
    )
    data["suggestions"].append({**data["suggestions"][0], "type": "some_future_kind"})
    schemas.validate("suggestions", data)


def test_the_suggestion_type_description_documents_the_known_types() -> None:
    items = schemas.load_schema("suggestions")["properties"]["suggestions"]["items"]
    description = items["properties"]["type"]["description"]
    for known in ("memory_leak", "high_memory_footprint", "system_memory_pressure", "unused_package", "growing_trend"):
        assert known in description


def test_integer_valued_floats_count_as_integers_and_ints_count_as_numbers() -> None:
    data = spec_data("garbage_collection")
    data["objects_collected"] = 25.0
    data["memory_before"] = 1
    schemas.validate("garbage_collection", data)


@pytest.mark.parametrize("status", ["registered", "loading", "loaded", "failed", "unloaded"])
def test_every_package_status_is_accepted(status: str) -> None:
    info = spec_data("package_info")
    info["status"] = status
    schemas.validate("package_info", info)


# --- Negative cases: (payload, mutation) pairs that must be rejected. ------------------------------------------------


def delete(*path: Any):
    def mutate(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        del data[path[-1]]

    return mutate


def put(value: Any, *path: Any):
    def mutate(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return mutate


BAD_PAYLOADS = [
    # missing required keys
    ("summary", delete("total_current_memory")),
    ("summary", delete("packages_with_leaks", 0, "growth_rate")),
    ("summary", delete("memory_trends", "stable")),
    ("summary", delete("memory_pressure_levels", "critical")),
    ("package_info", delete("memory_metrics", "memory_history_length")),
    ("package_info", delete("is_loaded")),
    ("leaks", delete("leaks", 0, "last_memory_check")),
    ("leaks", delete("detection_time")),
    ("suggestions", delete("suggestions", 0, "recommendation")),
    ("suggestions", delete("low_severity")),
    ("garbage_collection", delete("memory_freed")),
    ("update_metrics", delete("update_time")),
    # wrong types
    ("summary", put("100", "total_current_memory")),
    ("summary", put(1.5, "memory_trends", "increasing")),
    ("summary", put(-1, "total_packages")),
    ("summary", put({}, "packages_with_leaks")),
    ("summary", put(None, "total_peak_memory")),
    ("package_info", put("yes", "is_loaded")),
    ("package_info", put(1, "is_loaded")),
    ("package_info", put(None, "package_name")),
    ("package_info", put("1703123456.789", "memory_metrics", "last_memory_check")),
    ("package_info", put(True, "memory_metrics", "memory_leak_score")),
    ("leaks", put(1.5, "total_leaks")),
    ("leaks", put(None, "threshold")),
    ("suggestions", put("0.4", "suggestions", 0, "value")),
    ("suggestions", put(7, "suggestions", 0, "type")),
    ("suggestions", put(2.5, "high_severity")),
    ("garbage_collection", put("25", "objects_collected")),
    ("update_metrics", put(None, "message")),
    # extra keys
    ("summary", put(1, "extra")),
    ("summary", put(0, "memory_trends", "unknown")),
    ("summary", put(0, "memory_pressure_levels", "extreme")),
    ("summary", put(1, "packages_with_leaks", 0, "extra")),
    ("package_info", put(1, "memory_metrics", "memory_history")),
    ("leaks", put(1, "leaks", 0, "extra")),
    ("suggestions", put("x", "suggestions", 0, "details")),
    ("garbage_collection", put(1, "extra")),
    ("update_metrics", put(1, "extra")),
    # bad enums
    ("summary", put("rising", "packages_with_leaks", 0, "trend")),
    ("summary", put("extreme", "system_memory_pressure")),
    ("package_info", put("Stable", "memory_metrics", "memory_trend")),
    ("package_info", put("none", "memory_metrics", "memory_pressure_level")),
    ("package_info", put("ready", "status")),
    ("leaks", put("up", "leaks", 0, "memory_trend")),
    ("suggestions", put("critical", "suggestions", 0, "severity")),
]


@pytest.mark.parametrize(
    ("name", "mutate"),
    BAD_PAYLOADS,
    ids=[f"{name}-{index}" for index, (name, _) in enumerate(BAD_PAYLOADS)],
)
def test_a_broken_payload_is_rejected(name: str, mutate) -> None:
    data = spec_data(name)
    mutate(data)
    with pytest.raises(ValidationError):
        schemas.validate(name, data)


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_a_payload_that_is_not_an_object_is_rejected(name: str) -> None:
    for value in (None, [], "x", 1):
        assert errors(name, value)


@given(key=st.text(min_size=1).filter(lambda k: k not in spec_data("summary")))
def test_any_unknown_top_level_summary_key_is_rejected(key: str) -> None:
    data = spec_data("summary")
    data[key] = 0
    assert errors("summary", data)


# --- The whole report. ----------------------------------------------------------------------------------------------


def test_a_full_report_following_the_report_format_doc_validates() -> None:
    schemas.validate("report", full_report())


def test_a_report_survives_a_json_round_trip_and_still_validates() -> None:
    schemas.validate("report", json.loads(json.dumps(full_report())))


def test_a_report_with_a_broken_summary_is_rejected() -> None:
    report = full_report()
    del report["summary"]["memory_trends"]
    with pytest.raises(ValidationError) as info:
        schemas.validate("report", report)
    assert list(info.value.absolute_path)[:1] == ["summary"]


@pytest.mark.parametrize(
    "mutate",
    [
        put("rising", "leaks", "leaks", 0, "memory_trend"),
        put(1, "suggestions", "suggestions", 0, "extra"),
        put("ready", "packages", "torch", "status"),
        delete("packages", "torch", "memory_metrics", "memory_variance"),
        put({}, "packages", "torch"),
    ],
    ids=["leaks", "suggestions", "package-status", "package-metrics", "empty-package"],
)
def test_a_report_whose_embedded_payload_breaks_its_schema_is_rejected(mutate) -> None:
    report = full_report()
    mutate(report)
    assert errors("report", report)


@pytest.mark.parametrize(
    "mutate",
    [
        delete("format_version"),
        put(2, "format_version"),
        put(1, "unknown_section"),
        delete("comparison"),
        delete("run", "config", "max_leak_score"),
        put("0", "run", "exitstatus"),
        put("pytest --memtrack", "run", "argv"),
        put([[1.0]], "package_histories", "torch"),
        put([[1.0, 2, 3]], "package_histories", "torch"),
        put([["t", 2]], "package_histories", "torch"),
        put("flaky", "tests", 0, "outcome"),
        delete("tests", 0, "rss_delta"),
        put("0.83", "tests", 0, "leak_score"),
        put(None, "tests", 0, "leaking"),
        put([], "tests", 0, "hunt"),
        delete("tests", 0, "hunt", "kinds", "threads"),
        put({"leaking": True}, "tests", 0, "hunt", "kinds", "memory"),
        put({"leaking": True, "score": 1.0}, "tests", 0, "hunt", "kinds", "gpu"),
        delete("tests", 0, "hunt", "evidence", "new_fds"),
        put([3], "tests", 0, "hunt", "evidence", "new_threads"),
        put(False, "tests", 0, "hunt", "error"),
        delete("tests", 0, "hunt", "readings", 0, "objects"),
        put(1, "tests", 1, "message"),
        put("gw0", "tool", "name"),
        put("x", "tool", "extra"),
    ],
)
def test_a_report_that_breaks_the_report_format_is_rejected(mutate) -> None:
    report = full_report()
    mutate(report)
    assert errors("report", report)


def test_tests_entries_run_and_config_accept_extra_keys_for_forward_compatibility() -> None:
    report = full_report()
    report["tests"][0]["future_field"] = {"anything": [1, 2]}
    report["run"]["ci"] = "github"
    report["run"]["config"]["new_setting"] = True
    schemas.validate("report", report)


def test_a_report_may_have_no_tests_no_packages_and_a_free_form_comparison() -> None:
    report = full_report()
    report["tests"] = []
    report["packages"] = {}
    report["package_histories"] = {}
    report["comparison"] = {"baseline": "main", "regressions": [{"nodeid": "t", "delta": 0.5}]}
    report["run"]["exitstatus"] = None
    schemas.validate("report", report)


def test_a_hunt_that_could_not_conclude_carries_an_error_sentence() -> None:
    report = full_report()
    report["tests"][0]["hunt"]["error"] = "The test failed on repeat 3, so no verdict was possible."
    schemas.validate("report", report)


def test_the_report_schema_refers_to_the_payload_schemas_by_file_name() -> None:
    properties = schemas.load_schema("report")["properties"]
    assert properties["summary"] == {"$ref": "summary.json"}
    assert properties["leaks"] == {"$ref": "leaks.json"}
    assert properties["suggestions"] == {"$ref": "suggestions.json"}
    assert properties["packages"]["additionalProperties"] == {"$ref": "package_info.json"}


def test_the_validator_does_not_mutate_the_instance() -> None:
    report = full_report()
    before = copy.deepcopy(report)
    schemas.validate("report", report)
    assert report == before
