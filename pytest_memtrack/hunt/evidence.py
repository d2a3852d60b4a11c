"""What a leaking test left behind: allocation sites, packages, object types, threads, file descriptors, and the
named containers or objects that keep it alive. Evidence only: a failure here never changes a verdict."""

from __future__ import annotations

import os
import tracemalloc
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_memtrack.hunt.names import named_sizes
from pytest_memtrack.hunt.readings import open_fds, thread_names
from pytest_memtrack.hunt.retention import find_holders, grown_holders
from pytest_memtrack.tracking.attribution import file_index, is_harness


@dataclass
class Baseline:
    snapshot: tracemalloc.Snapshot | None
    types: Counter[type]
    threads: dict[int, str]
    fds: dict[int, str]
    #: ``names.named_sizes`` at the first measured reading in which Python memory grew (none if it never did),
    #: or taken untraced before the hunt's warm-ups (``runs_before_baseline``).
    sizes: dict[tuple[str, ...], tuple[int, str]] = field(default_factory=dict)
    sizes_at: int = 0  # the index of that reading; 0 while not taken, or when taken before the warm-ups
    #: Runs made between the sizes and the baseline reading: the warm-ups when the sizes were taken before them.
    runs_before_baseline: int = 0
    #: The sized objects and caches ``sizes`` measured, by name (``retention.runs_to_fill`` measures them again);
    #: emptied before the evidence is gathered, whose holder search must not find them referred to from here.
    containers: dict[tuple[str, ...], object] = field(default_factory=dict)
    #: The same names measured again when the runs' evidence is taken (``names.sizes_again``); None: not taken.
    sizes_after: dict[tuple[str, ...], tuple[int, str]] | None = None


def _relative(path: str, root: str | None) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel
        except ValueError:
            pass
    return path


def gather_evidence(before: Baseline, after: tracemalloc.Snapshot | None, grown: Counter[type], measured: int,
                    root: str | None, deep_sites: Mapping[tuple[str, int], tuple[int, int]] | None = None,
                    top: int = 8) -> dict[str, Any]:
    """What grew between the baseline and the end: allocation sites, packages, object types, threads, fds.
    ``deep_sites`` are what one run allocated through chains of standard library calls, by the line of the
    test's code they were made below (``readings.probe``): sites too, per run already."""
    runs = max(1, measured)
    evidence: dict[str, Any] = {"allocation_sites": [], "packages": [], "object_types": [],
                                "new_threads": [], "new_fds": []}
    if before.snapshot is not None and after is not None:
        # (file, line) -> (bytes, blocks) per run
        sites: dict[tuple[str, int], tuple[float, float]] = {
            (s.traceback[0].filename, s.traceback[0].lineno): (s.size_diff / runs, s.count_diff / runs)
            for s in after.compare_to(before.snapshot, "lineno") if s.size_diff > 0}
        for site, (deep_size, deep_count) in (deep_sites or {}).items():
            known_size, known_count = sites.get(site, (0.0, 0.0))
            sites[site] = (known_size + deep_size, known_count + deep_count)
        by_package: dict[str, float] = {}
        for (filename, _), (size, _) in sites.items():
            package = file_index.module_for(filename) or _relative(filename, root)
            by_package[package] = by_package.get(package, 0.0) + size
        ordered = sorted(sites.items(), key=lambda item: (-item[1][0], item[0]))
        evidence["allocation_sites"] = [
            {"file": _relative(filename, root), "line": line, "bytes_per_run": size, "count_per_run": count}
            for (filename, line), (size, count) in ordered[:top]]
        packages = sorted(by_package.items(), key=lambda item: (-item[1], item[0]))
        evidence["packages"] = [{"package": name, "bytes_per_run": size} for name, size in packages[:top]]
    evidence["object_types"] = [{"type": f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."),
                                 "count_per_run": count / runs}
                                for kind, count in grown.most_common(top * 2)
                                if count >= runs and not is_harness(kind.__module__)][:top]
    threads_now = thread_names()
    evidence["new_threads"] = [name for ident, name in threads_now.items() if ident not in before.threads]
    fds_now = open_fds()
    evidence["new_fds"] = [target for fd, target in sorted(fds_now.items())
                           if before.fds.get(fd) != target][:top]
    return evidence


def named_sizes_or_nothing(containers: dict[tuple[str, ...], object] | None = None,
                           ) -> dict[tuple[str, ...], tuple[int, str]]:
    try:
        return named_sizes(containers)
    except Exception:  # evidence only
        if containers is not None:
            containers.clear()
        return {}


def leak_holders(baseline: Baseline, survivors: list[object], measured: int, grown: Counter[type],
             *own: object) -> list[dict[str, Any]]:
    """What keeps the leak alive: named containers that grew every run (``retention.grown_holders``), then the
    pre-existing objects the runs' surviving objects hang from (``retention.find_holders``). Evidence only: a
    failure here loses nothing."""
    try:
        holders = []
        if baseline.sizes and measured > 0:  # measured again (``sizes_after``), else by a walk (~30 ms)
            after = baseline.sizes_after if baseline.sizes_after is not None else named_sizes()
            holders = grown_holders(baseline.sizes, after, measured)
        if not holders:  # nothing named grew: climb from survivors of the types that grew every run (a sample:
            # each level of the climb is a scan of the heap)
            runs = max(1, measured)
            kinds = {kind for kind, count in grown.items() if count >= runs and not is_harness(kind.__module__)}
            sample = [obj for obj in survivors if type(obj) in kinds][-50:]
            holders = find_holders(sample, excluded=(baseline, survivors, sample, *own), max_depth=3,
                                   min_objects=runs)
        return [holder.to_dict() for holder in holders[:5]]
    except Exception:
        return []
