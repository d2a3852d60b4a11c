"""Memory monitoring for operators, written the way the memory-tracking spec's usage examples are."""

from __future__ import annotations

import sys
from typing import TextIO

from pytest_memtrack import get_lazy_loader

MB = 1024 * 1024


def memory_report(threshold: float = 0.2, packages: tuple[str, ...] = (), out: TextIO | None = None) -> dict:
    """Print the loader's memory summary, leaks, suggestions and per-package figures; return the summary."""
    out = out or sys.stdout
    loader = get_lazy_loader()

    # Basic memory monitoring
    loader.update_all_memory_metrics()
    summary = loader.get_memory_usage_summary()
    print(f"Total current memory: {summary['total_current_memory'] / MB:.1f}MB", file=out)
    print(f"System memory pressure: {summary['system_memory_pressure']}", file=out)
    print(f"Packages: {summary['loaded_packages']} loaded of {summary['total_packages']} known", file=out)

    # Memory leak detection
    for leak in loader.detect_memory_leaks(threshold=threshold):
        print(f"Package {leak['package_name']} has leak score: {leak['leak_score']:.2f}", file=out)
        print(f"Memory trend: {leak['memory_trend']}", file=out)
        print(f"Growth rate: {leak['memory_growth_rate'] / MB:.1f}MB/s", file=out)

    # Memory optimization
    for suggestion in loader.get_memory_optimization_suggestions():
        print(f"{suggestion['severity'].upper()}: {suggestion['message']}", file=out)
        print(f"Recommendation: {suggestion['recommendation']}", file=out)

    # Package-specific memory info
    for name in packages:
        memory_info = loader.get_package_memory_info(name)
        if memory_info is None:
            print(f"{name}: not known to the loader", file=out)
            continue
        metrics = memory_info["memory_metrics"]  # figures are None until the package was measured
        current, footprint = metrics["current_memory_usage"] or 0.0, metrics["memory_footprint"] or 0.0
        print(f"{name} ({memory_info['status']}): current {current / MB:.2f}MB, "
              f"footprint {footprint / MB:.2f}MB, leak score {metrics['memory_leak_score']:.2f}, "
              f"trend {metrics['memory_trend']}", file=out)
    return summary
