"""Regressions found by running real third-party suites under the plugin: it must never change a suite's outcome
(unless a memory limit is broken), crash, or write a report that does not validate."""

from __future__ import annotations

import json

import pytest

from pytest_memtrack.schemas import validate

NO_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_PLUGINS, *args)


def test_xfail_and_xpass_outcomes_are_in_a_valid_report(pytester):
    # attrs and click mark tests xfail: the report said "xfailed", which the schema did not allow.
    pytester.makepyfile("""
        import pytest
        @pytest.mark.xfail
        def test_xfailed():
            assert False
        @pytest.mark.xfail
        def test_xpassed():
            pass
        @pytest.mark.xfail(strict=True)
        def test_xpassed_strict():
            pass
        def test_skipped():
            pytest.skip("no")
        def test_imperative_xfail():
            pytest.xfail("later")
    """)
    result = run(pytester, "--memtrack", "--memtrack-json=r.json", "--memtrack-max-leak-score=1.0")
    result.assert_outcomes(xfailed=2, xpassed=1, failed=1, skipped=1)
    report = json.loads((pytester.path / "r.json").read_text())
    validate("report", report)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {"test_xfailed": "xfailed", "test_xpassed": "xpassed", "test_xpassed_strict": "failed",
                        "test_skipped": "skipped", "test_imperative_xfail": "xfailed"}


def test_a_warning_at_import_is_attributed_to_the_importer_not_to_the_import_observer(pytester):
    # python-dateutil's test_imports: a module warning at import with a stacklevel that names its importer. The
    # observer's wrapper around exec_module sat between, so the warning named pytest_memtrack/imports.py, and a
    # filterwarnings entry for the importing module no longer matched it (an "error" filter then failed the test).
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    ignore:old module:DeprecationWarning:test_app\n")
    pkg = pytester.mkpydir("mt_deprecated_pkg")
    pkg.joinpath("__init__.py").write_text("import warnings\nwarnings.warn('old module', DeprecationWarning, stacklevel=2)\n")
    pkg.joinpath("other.py").write_text("import warnings\nwarnings.warn('other', DeprecationWarning, stacklevel=2)\n")
    pytester.makepyfile(test_app="""
        import pytest
        def test_ignored_for_this_module():
            import mt_deprecated_pkg
        def test_named_at_the_import_statement():
            with pytest.warns(DeprecationWarning, match="other") as record:
                import mt_deprecated_pkg.other
            assert [w.filename for w in record] == [__file__]
    """)
    for args in ((), ("--memtrack",)):
        result = run(pytester, *args)
        result.assert_outcomes(passed=2)
