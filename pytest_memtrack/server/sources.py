"""Where the API's data comes from: the live session's lazy loader, or a saved report (read-only).

Both answer through the same payload builders (``tracking.payloads``), so the served leaks of a saved report are
those the live loader would list for the same figures, at any threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_memtrack.report.verdict import count_tests
from pytest_memtrack.tracking.payloads import leaks_payload

if TYPE_CHECKING:
    from pytest_memtrack.tracking.loader import LazyLoader

DEFAULT_THRESHOLD = 0.1


@runtime_checkable
class MemorySource(Protocol):
    """What the server reads: the live lazy loader (``loader.get_lazy_loader()``) or a :class:`ReportSource`.

    Implementations must be safe to call from several threads at once.
    """

    def get_memory_usage_summary(self) -> dict[str, Any]: ...

    def get_package_memory_info(self, name: str) -> dict[str, Any] | None: ...

    def get_memory_leaks_report(self, threshold: float) -> dict[str, Any]: ...

    def get_optimization_suggestions_report(self) -> dict[str, Any]: ...

    def force_garbage_collection(self) -> dict[str, Any]: ...

    def update_all_memory_metrics(self) -> dict[str, Any]: ...

    def package_names(self) -> list[str]: ...

    # Optional, for ``/metrics``: ``get_test_counts() -> dict[str, int] | None``, the tests run, hunted and leaking
    # (``report.verdict.count_tests``; a source without it, the bare loader, has no tests), and
    # ``get_package_memory_infos() -> dict[str, dict]``, every package payload at once (else one by one).


class ReadOnlySource(Exception):
    """The source cannot do this (a saved report cannot collect garbage): answered with 409 and the sentence."""


class ReportSource:
    """A :class:`MemorySource` over a saved report model (docs/report-format.md); read-only and thread-safe.

    Leaks are recomputed for any threshold from the ``packages`` entries with the loader's own builder
    (``payloads.leaks_payload``, the one is-leaking rule), highest score first.
    """

    def __init__(self, report: Mapping[str, Any]) -> None:
        self._report = report
        self._packages: Mapping[str, Any] = report.get("packages") or {}
        leaks = report.get("leaks") or {}
        run = report.get("run") or {}
        self.default_threshold = _as_threshold(leaks.get("threshold"), DEFAULT_THRESHOLD)
        self._detection_time = float(leaks.get("detection_time") or run.get("finished") or 0.0)

    def get_memory_usage_summary(self) -> dict[str, Any]:
        return dict(self._report["summary"])

    def get_package_memory_info(self, name: str) -> dict[str, Any] | None:
        entry = self._packages.get(name)
        # Reports written before packages named their leaking tests lack the key: none were recorded.
        return {**entry, "leak_tests": list(entry.get("leak_tests") or [])} if entry is not None else None

    def get_memory_leaks_report(self, threshold: float) -> dict[str, Any]:
        return leaks_payload(self._packages, threshold, self._detection_time)

    def get_optimization_suggestions_report(self) -> dict[str, Any]:
        return dict(self._report["suggestions"])

    def force_garbage_collection(self) -> dict[str, Any]:
        raise ReadOnlySource("A saved report cannot collect garbage; start the server during a pytest session "
                             "(pytest --memtrack --memtrack-serve=PORT) to use this endpoint.")

    def update_all_memory_metrics(self) -> dict[str, Any]:
        raise ReadOnlySource("A saved report cannot update metrics; start the server during a pytest session "
                             "(pytest --memtrack --memtrack-serve=PORT) to use this endpoint.")

    def package_names(self) -> list[str]:
        return list(self._packages)

    def get_package_memory_infos(self) -> dict[str, dict[str, Any]]:
        return {name: info for name in self._packages if (info := self.get_package_memory_info(name)) is not None}

    def get_test_counts(self) -> dict[str, int] | None:
        tests = self._report.get("tests")
        return count_tests(tests) if isinstance(tests, list) else None


class LiveSource:
    """The process's current lazy loader, looked up on every call (the session may replace the loader after the
    server started, through ``loader.reset_lazy_loader``); ``tests``: the session's test entries so far (the
    report model's ``TestRecorder.tests``), None outside a session."""

    def __init__(self, tests: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._tests = tests

    @staticmethod
    def _loader() -> LazyLoader:
        from pytest_memtrack.tracking.loader import get_lazy_loader

        return get_lazy_loader()

    def get_memory_usage_summary(self) -> dict[str, Any]:
        return self._loader().get_memory_usage_summary()

    def get_package_memory_info(self, name: str) -> dict[str, Any] | None:
        return self._loader().get_package_memory_info(name)

    def get_memory_leaks_report(self, threshold: float) -> dict[str, Any]:
        return self._loader().get_memory_leaks_report(threshold)

    def get_optimization_suggestions_report(self) -> dict[str, Any]:
        return self._loader().get_optimization_suggestions_report()

    def force_garbage_collection(self) -> dict[str, Any]:
        return self._loader().force_garbage_collection()

    def update_all_memory_metrics(self) -> dict[str, Any]:
        # The session's own readings make the history and the scores; a request refreshes current figures only.
        return self._loader().update_all_memory_metrics(into_history=False)

    def package_names(self) -> list[str]:
        return self._loader().package_names()

    def get_package_memory_infos(self) -> dict[str, dict[str, Any]]:
        return self._loader().get_package_memory_infos()

    def get_test_counts(self) -> dict[str, int] | None:
        if self._tests is None:
            return None
        for _ in range(3):  # the session adds entries while the server reads: a changing dict is read again
            try:
                return count_tests(self._tests())
            except RuntimeError:
                continue
        return None


def _as_threshold(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if 0.0 <= number <= 1.0 else default
