"""pytest-memtrack: memory-leak regression testing for pytest.

The public API is the spec's lazy loader with memory tracking; the pytest plugin lives in ``plugin``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["LazyLoader", "MemoryMetrics", "MemoryMonitor", "PackageInfo", "get_lazy_loader", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that ``pytest -p no:memtrack`` and plugin start-up stay cheap.
    if name in ("LazyLoader", "get_lazy_loader"):
        from pytest_memtrack.tracking import loader

        return getattr(loader, name)
    if name in ("MemoryMetrics", "PackageInfo"):
        from pytest_memtrack.tracking import metrics

        return getattr(metrics, name)
    if name == "MemoryMonitor":
        from pytest_memtrack.tracking.monitor import MemoryMonitor

        return MemoryMonitor
    raise AttributeError(f"module 'pytest_memtrack' has no attribute {name!r}")
