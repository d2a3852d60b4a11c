"""LazyLoader and get_lazy_loader(): packages that load on first use, with their memory tracked.

``loader.lazy("pkg")`` returns a module proxy; the first attribute access imports the package (errors surface
there, as ``ImportError`` naming the package), like ``importlib.util.LazyLoader`` and scientific-python's
``lazy_loader``, but the import is an ordinary, complete one (no half-initialised module objects), and it is
measured: memory before and after (also when it fails), load time, status.

``unload`` removes a package and its submodules from ``sys.modules`` and drops the loader's references, then runs
the garbage collector; ``auto_unload=True`` does so for idle lazy packages under memory pressure (``unloading``).
Payloads carry forecasts of when memory runs out (``forecast``), against ``memory_budget`` or the system's memory.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from pytest_memtrack.tracking.attribution import (
    is_test_module,
    is_test_suite_package,
    measure_packages,
    top_level,
)
from pytest_memtrack.tracking.background import DEFAULT_CHECK_INTERVAL, MonitoringStatus, PeriodicCheck
from pytest_memtrack.tracking.imports import FootprintMeter, ImportMeasurement, ImportObserver
from pytest_memtrack.tracking.lazy_module import LazyModule
from pytest_memtrack.tracking.metrics import DEFAULT_HISTORY_SIZE, MemoryMetrics, PackageInfo
from pytest_memtrack.tracking.monitor import MemoryMonitor
from pytest_memtrack.tracking.payloads import leaks_payload, suggestions_payload, summary_payload
from pytest_memtrack.tracking.project import NOT_TRACKED, OPTIONAL_TRACKING
from pytest_memtrack.tracking.room import MemoryRoom, Room
from pytest_memtrack.tracking.suggestions import PackageFigures, SuggestionRules, suggest
from pytest_memtrack.tracking.unloading import DEFAULT_UNLOAD_IDLE, AutoUnloadLog, unload_idle, unload_modules


class LazyLoader:
    """Registers packages, loads them lazily, observes ordinary imports, and tracks every package's memory.

    Thread-safe: a server thread may read payloads while tests load packages.
    """

    def __init__(self, monitor: MemoryMonitor | None = None, *, history_size: int = DEFAULT_HISTORY_SIZE,
                 leak_threshold: float = 0.1, rules: SuggestionRules | None = None, track_all: bool = False,
                 memory_budget: int | None = None, auto_unload: bool = False,
                 unload_idle_seconds: float = DEFAULT_UNLOAD_IDLE) -> None:
        self.track_all = track_all
        #: Unload idle lazy packages under high pressure (``unloading``), and what that did.
        self.auto_unload = AutoUnloadLog(enabled=auto_unload, idle_seconds=float(unload_idle_seconds))
        #: The project under test's own packages (``project.project_packages``): always tracked.
        self.project: frozenset[str] = frozenset()
        #: Packages imported but not tracked (the standard library, the test tooling), for the report to say.
        self.left_out: set[str] = set()
        #: The test suite's folders (``forget_test_packages``): packages loaded from them are the suite's state.
        self.suite_dirs: tuple[str, ...] = ()
        self._ignored: set[str] = set()
        self.monitor = monitor or MemoryMonitor(leak_threshold=leak_threshold)
        self.history_size = history_size
        #: The process's limit (``memory_budget``), its RSS history and the forecasts (``room``).
        self.room = MemoryRoom(self.monitor, memory_budget, history_size)
        self.leak_threshold = leak_threshold
        self.rules = rules or SuggestionRules(leak_threshold=leak_threshold)
        self._lock = threading.RLock()
        self._packages: dict[str, PackageInfo] = {}
        self._meter = FootprintMeter()
        self._observer: ImportObserver | None = None
        self._periodic: PeriodicCheck | None = None

    # ------------------------------------------------------------------ registry
    def _info(self, name: str, *, create: bool = True, observed: bool = False) -> PackageInfo | None:
        with self._lock:
            info = self._packages.get(name)
            if info is None and create:
                info = PackageInfo(name=name, observed=observed, monitor=self.monitor,
                                   memory_metrics=MemoryMetrics(max_history=self.history_size))
                self._packages[name] = info
            return info

    def register(self, name: str, import_name: str | None = None) -> PackageInfo:
        """Make ``name`` known without importing it (status ``registered``, or ``loaded`` if already imported)."""
        info = self._info(name)
        assert info is not None
        with info.lock:
            info.import_name = import_name or info.import_name or name
            if info.status == "registered" and info.import_name in sys.modules:
                info.module = sys.modules[info.import_name]
                info.status = "loaded"
        return info

    def get_package_info(self, name: str) -> PackageInfo | None:
        return self._info(name, create=False)

    def package_names(self) -> list[str]:
        with self._lock:
            return sorted(self._packages)

    def packages(self) -> list[PackageInfo]:
        with self._lock:
            return [self._packages[name] for name in sorted(self._packages)]

    def is_loaded(self, name: str) -> bool:
        info = self.get_package_info(name)
        return bool(info and info.is_loaded)

    # ------------------------------------------------------------------ loading
    def lazy(self, name: str, import_name: str | None = None) -> LazyModule:
        """A module proxy for ``name``; the package is imported on first attribute access."""
        self.register(name, import_name)
        return LazyModule(name, self)

    def load(self, name: str) -> ModuleType:
        """Import ``name`` now (once), measuring memory before and after; raises ``ImportError`` on failure."""
        info = self.register(name)
        with info.lock:
            info.last_used = time.time()
            if info.status == "loaded" and info.module is not None:
                return info.module
            if info.status == "failed" and info.error:
                raise ImportError(f"lazy package {name!r} failed to load earlier: {info.error}", name=name)
            info.status = "loading"
            token = self._meter.begin()
            self._record_now(info, reading=0.0)  # before loading, the package holds nothing
            try:
                module = importlib.import_module(info.import_name)
            except BaseException as exc:
                measurement = self._meter.end(name, token, f"{type(exc).__name__}: {exc}")
                info.status = "failed"
                info.error = measurement.error
                info.load_time = measurement.duration
                info.memory_metrics.memory_footprint = measurement.footprint
                self._record_now(info, reading=0.0)  # metrics are updated even when loading fails
                if isinstance(exc, ImportError):
                    raise
                raise ImportError(f"lazy package {name!r} failed to load: {info.error}", name=name) from exc
            measurement = self._meter.end(name, token)
            info.module = module
            info.status = "loaded"
            info.error = None
            info.load_time = measurement.duration
            info.loaded_at = time.time()
            info.memory_metrics.memory_footprint = measurement.footprint
            info.update_memory_metrics()
            return module

    def unload(self, name: str, *, restore_if_referenced: bool = False) -> dict[str, Any]:
        """Drop ``name`` and its submodules from ``sys.modules`` and our references; report what was freed
        (``unloading.unload_modules``; ``restore_if_referenced`` keeps a package that would not be freed)."""
        info = self.get_package_info(name)
        if info is None:
            raise KeyError(f"unknown package {name!r}")
        with info.lock:
            result = unload_modules(info.import_name, self.monitor, restore_if_referenced=restore_if_referenced,
                                    drop=lambda: setattr(info, "module", None))
            if result["restored"]:
                info.module = sys.modules.get(info.import_name)
            else:
                info.status = "unloaded"
                self._record_now(info, reading=0.0)
            return {"package_name": name, **result}

    def auto_unload_idle(self, pressure: str | None = None) -> list[dict[str, Any]]:
        """Unload idle lazy packages if ``auto_unload`` is on and the pressure is high (``unloading.unload_idle``)."""
        return unload_idle(self, pressure) if self.auto_unload.enabled else []

    # ------------------------------------------------------------------ observing ordinary imports
    def observe_imports(self, ignore_present: bool = False) -> None:
        """Notice every package imported from now on, and the ones already imported — unless
        ``ignore_present``: the plugin starts observing before conftests load, when what is imported is pytest's
        own start-up (its plugins and their dependencies), which is tooling, not the project (see ``track_all``)."""
        if ignore_present and not self.track_all:
            self._ignored.update(top_level(name) for name in list(sys.modules) if top_level(name) not in self.project)
        with self._lock:
            if self._observer is None:
                self._observer = ImportObserver(self._on_import, self._meter, skip=self._not_observed)
            self._observer.install()
        for module_name in list(sys.modules):
            package = top_level(module_name)
            if package not in self._packages and self._observable(package) \
                    and not is_test_module(sys.modules.get(package)):
                info = self._info(package, observed=True)
                assert info is not None
                if info.status == "registered" and package in sys.modules:
                    info.status = "loaded"
                    info.module = sys.modules[package]

    def forget_test_packages(self, suite_dirs: Iterable[str] = ()) -> list[str]:
        """Stop tracking observed packages that are the test suite's own (returns their names): a ``tests`` folder
        with an ``__init__.py`` (``attribution.is_test_suite_package``), and what lies in ``suite_dirs``, the folders
        of the collected test files below the rootdir (jinja2's ``tests/res``), now or imported later."""
        self.suite_dirs = tuple(sorted({os.path.abspath(d) for d in suite_dirs}))
        members: dict[str, dict[str, object]] = {}
        for name, module in list(sys.modules.items()):
            members.setdefault(top_level(name), {})[name] = module
        forgotten = []
        with self._lock:
            for name, info in list(self._packages.items()):
                if not info.observed or name in self.project:
                    continue
                if is_test_suite_package(members.get(info.import_name or name, {})) or self._in_suite(
                        info.module or sys.modules.get(name)):
                    del self._packages[name]
                    self._ignored.add(name)
                    self.left_out.add(name)
                    forgotten.append(name)
        return forgotten

    def _in_suite(self, module: object) -> bool:
        """Whether the top-level ``module`` is a package folder strictly inside a ``suite_dirs`` folder, or a module
        file in one; a package holding its own tests (``mypkg/test_x.py``) is the project's."""
        if not self.suite_dirs or module is None:
            return False
        folders = getattr(module, "__path__", None)
        path = next(iter(folders), None) if folders else getattr(module, "__file__", None)
        if not isinstance(path, str):
            return False
        path = os.path.abspath(path)
        return any(path.startswith(folder + os.sep) for folder in self.suite_dirs)

    def stop_observing(self) -> None:
        with self._lock:
            if self._observer is not None:
                self._observer.uninstall()

    def _not_observed(self, module_name: str) -> bool:
        """Imports the observer leaves unmeasured: explicit loads (measured by ``load``) and untracked packages."""
        package = top_level(module_name)
        for key in (module_name, package):
            info = self._packages.get(key)
            if info is not None and info.status == "loading":
                return True
        return package not in self._packages and not self._observable(package)

    def _observable(self, package: str) -> bool:
        """Whether an ordinarily imported top-level package is tracked (see ``OPTIONAL_TRACKING``)."""
        if package in NOT_TRACKED:
            return False
        if package in self.project:
            return True
        if package.startswith("_") or package in self._ignored:
            return False
        if self.track_all or package not in OPTIONAL_TRACKING:
            return True
        self.left_out.add(package)
        return False

    def _on_import(self, measurement: ImportMeasurement, module: ModuleType | None) -> None:
        """A module was imported the ordinary way: its footprint and time add to its top-level package's."""
        package = top_level(measurement.package)
        if package not in self._packages and not self._observable(package):
            return
        if self.suite_dirs and package not in self.project and self._in_suite(
                sys.modules.get(package) or (module if measurement.package == package else None)):
            # the suite's own resources (see forget_test_packages)
            with self._lock:
                info = self._packages.get(package)
                if info is not None and info.observed:
                    del self._packages[package]
                self._ignored.add(package)
                self.left_out.add(package)
            return
        info = self._info(package, observed=True)
        assert info is not None
        with info.lock:
            metrics = info.memory_metrics
            # Nested submodules finish first: every module's exclusive bytes add up to the package's footprint.
            metrics.memory_footprint = (metrics.memory_footprint or 0.0) + measurement.footprint
            if measurement.package == package:
                info.load_time = measurement.duration  # wall time of the package's own import, nested ones included
                if module is None:
                    info.status, info.error = "failed", measurement.error
                else:
                    info.status, info.module, info.loaded_at, info.error = "loaded", module, time.time(), None

    # ------------------------------------------------------------------ readings
    def _record_now(self, info: PackageInfo, reading: float) -> None:
        info.update_memory_metrics(reading=reading, pressure_level=self.monitor.get_memory_pressure_level())

    def record_readings(self, readings: dict[str, float], timestamp: float | None = None) -> None:
        """Record one reading per package taken elsewhere (the plugin's periodic pass, or a merge)."""
        now = timestamp or time.time()
        level = self.monitor.get_memory_pressure_level()
        for name, value in readings.items():
            info = self._info(name, observed=True)
            assert info is not None
            info.update_memory_metrics(reading=value, timestamp=now, pressure_level=level)
        self.room.record(now)
        self.auto_unload_idle(level)

    def charge_hunt(self, nodeid: str, allocated_in: Iterable[Mapping[str, Any]], leak_score: float) -> list[str]:
        """Charge a hunted test's Python-memory leak score to the tracked packages its growth was allocated in,
        each in proportion to its share of the growth (``allocated_in``: the hunt's evidence, ``{"package":
        module name, "bytes_per_run": ...}``). Returns the packages charged."""
        growth: dict[str, float] = {}
        for entry in allocated_in:
            size = float(entry.get("bytes_per_run") or 0.0)
            if size > 0:
                package = top_level(str(entry.get("package", "")))
                growth[package] = growth.get(package, 0.0) + size
        total = sum(growth.values())
        charged: list[str] = []
        if leak_score <= 0 or total <= 0:
            return charged
        for package, size in growth.items():
            info = self._packages.get(package)
            if info is None:
                continue
            with info.lock:
                info.memory_metrics.charge(nodeid, round(leak_score * size / total, 4))
            charged.append(package)
        return charged

    def measure_loaded(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """One attribution pass over loaded packages: module-state bytes each (no recording)."""
        with self._lock:
            infos = [self._packages[n] for n in (names or self._packages) if n in self._packages]
        wanted = [i.import_name for i in infos if i.is_loaded]
        by_import = measure_packages(wanted)
        return {i.name: float(by_import[i.import_name]) for i in infos if i.import_name in by_import}

    def update_all_memory_metrics(self, *, into_history: bool = True) -> dict[str, Any]:
        """Take a fresh reading for every loaded package (data of ``POST .../update-metrics``).

        ``into_history=False``: the readings update the current and peak figures only. The server of a pytest
        session asks so: its history and leak scores are the session's own readings, which requests from outside
        (however many) must never push out of the bounded history.
        """
        readings = self.measure_loaded()
        if into_history:
            self.record_readings(readings)
        else:
            now = time.time()
            for name, value in readings.items():
                info = self._info(name, observed=True)
                assert info is not None
                with info.lock:
                    info.memory_metrics.refresh(now, value)
            self.auto_unload_idle()
        return {"message": "Memory metrics updated for all packages", "update_time": time.time()}

    # ------------------------------------------------------------------ background checks
    def start_monitoring(self, interval: float = DEFAULT_CHECK_INTERVAL) -> MonitoringStatus:
        """Take a reading of every loaded package every ``interval`` seconds on a daemon thread (restarting with
        the new interval if already running). Each check costs one attribution pass (see ``attribution``)."""
        check = PeriodicCheck(self.update_all_memory_metrics, interval)
        with self._lock:
            previous, self._periodic = self._periodic, check
        if previous is not None:
            previous.stop()
        check.start()
        return check.status()

    def stop_monitoring(self) -> MonitoringStatus | None:
        """Stop the background checks (a check in progress finishes first); None when none were running."""
        with self._lock:
            periodic, self._periodic = self._periodic, None
        if periodic is None:
            return None
        periodic.stop()
        return periodic.status()

    def monitoring_status(self) -> MonitoringStatus | None:
        with self._lock:
            periodic = self._periodic
        return periodic.status() if periodic is not None else None

    # ------------------------------------------------------------------ payloads
    def get_package_memory_info(self, name: str) -> dict[str, Any] | None:
        return self.get_package_memory_infos([name]).get(name)

    def get_package_memory_infos(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Package payloads (all, or those of ``names``) with their forecasts, from one reading of the room."""
        room, payloads = self.room.read(), {}
        for info in self.packages() if names is None else filter(None, map(self.get_package_info, names)):
            payloads[info.name] = info.get_memory_summary()
            if room is not None:  # None: the room is unknown (``room.MemoryRoom.live``)
                payloads[info.name]["forecast"] = self.room.package(info, room).to_payload()
        return payloads

    def get_memory_usage_summary(self) -> dict[str, Any]:
        """The data of ``GET /api/packages/memory/summary``."""
        room, infos = self.room.read(), self.packages()
        summary = summary_payload((i.get_memory_summary() for i in infos), self.leak_threshold,
                                  self.monitor.get_memory_pressure_level())
        if room is not None:  # forecasts for the packages the summary lists only: a summary of 1000 stays cheap
            by_name = {i.name: i for i in infos}
            for entry in summary["packages_with_leaks"]:
                entry["forecast"] = self.room.package(by_name[entry["package_name"]], room).to_payload()
            summary.update(process_memory_usage=room.process_rss, process_forecast=self.room.process(room).to_payload())
        return {**summary, "auto_unload": self.auto_unload.to_payload()}

    def detect_memory_leaks(self, threshold: float = 0.1) -> list[dict[str, Any]]:
        """Packages whose leak score reaches ``threshold``, highest score first."""
        return self.get_memory_leaks_report(threshold)["leaks"]

    def get_memory_leaks_report(self, threshold: float = 0.1) -> dict[str, Any]:
        """The data of ``GET /api/packages/memory/leaks?threshold=...``."""
        return leaks_payload({i.name: i.get_memory_summary() for i in self.packages()}, threshold, time.time())

    def _figures(self, room: Room | None) -> list[PackageFigures]:
        return [PackageFigures(i.name, i.status, i.memory_metrics.memory_leak_score, i.memory_metrics.memory_trend,
                               i.memory_metrics.memory_footprint, i.last_used, not i.observed,
                               self.room.package(i, room) if room else None) for i in self.packages()]

    def get_memory_optimization_suggestions(self) -> list[dict[str, Any]]:
        room = self.room.read()
        return suggest(self._figures(room), self.monitor.get_memory_pressure_level(), time.time(), self.rules,
                       process_forecast=self.room.process(room) if room else None)

    def get_optimization_suggestions_report(self) -> dict[str, Any]:
        """The data of ``GET /api/packages/memory/optimization-suggestions``."""
        return suggestions_payload(self.get_memory_optimization_suggestions(), time.time())

    def force_garbage_collection(self) -> dict[str, Any]:
        """Run a full collection (data of ``POST .../garbage-collection``): RSS before/after and objects found."""
        before = self.monitor.get_current_memory_usage()
        collected = gc.collect()
        after = self.monitor.get_current_memory_usage()
        return {"memory_before": before, "memory_after": after, "memory_freed": max(0.0, before - after),
                "objects_collected": collected, "garbage_collection_time": time.time()}


_loader: LazyLoader | None = None
_loader_lock = threading.Lock()


def get_lazy_loader() -> LazyLoader:
    """The process's one loader (created on first call)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = LazyLoader()
        return _loader


def reset_lazy_loader(loader: LazyLoader | None = None) -> LazyLoader | None:
    """Replace the process's loader (the plugin configures one per session); returns the previous one."""
    global _loader
    with _loader_lock:
        previous, _loader = _loader, loader
        return previous
