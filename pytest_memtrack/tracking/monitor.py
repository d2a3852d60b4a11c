"""MemoryMonitor: real readings from the process and the system, and the analysis over histories.

Readings (each names its source, so figures in reports are honest about what they measure):

* process memory: resident set size (RSS), ``/proc/self/statm`` on Linux (``tracking.process.current_rss``), else
  ``psutil.Process().memory_info().rss`` — what the OS has mapped for the process, native allocations included;
  page-granular and noisy by tens of KiB.
* package memory: module-state bytes from ``attribution.package_state_bytes`` (``sys.getsizeof`` over what the
  package's module globals keep reachable).
* system pressure: the share of memory in use against thresholds, ``(MemTotal - MemAvailable) / MemTotal`` from
  ``/proc/meminfo`` on Linux (the figure ``psutil.virtual_memory().percent`` computes there), else psutil's. The
  reading is a function the monitor is given (``MemoryMonitor(system_usage=...)``), so a test or an application
  can supply its own (a container's cgroup limit, or a simulated pressure).
* available memory: ``MemAvailable`` (``psutil.virtual_memory().available``; the forecasts' default limit,
  ``forecast``).

(Read from ``/proc`` directly on Linux, psutil is imported only elsewhere: its import is ~10 ms of every session's
start-up.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pytest_memtrack.tracking import analysis
from pytest_memtrack.tracking.attribution import package_state_bytes
from pytest_memtrack.tracking.payloads import PRESSURE_LEVELS
from pytest_memtrack.tracking.process import current_rss

History = Sequence[tuple[float, float]]

DEFAULT_PRESSURE_THRESHOLDS: Mapping[str, float] = {"low": 0.5, "medium": 0.7, "high": 0.85, "critical": 0.95}


def pressure_level(used_fraction: float, thresholds: Mapping[str, float] = DEFAULT_PRESSURE_THRESHOLDS) -> str:
    """The highest level whose threshold the used share has reached above ``low``: below ``medium``'s threshold
    is ``low`` (``low``'s own threshold only marks where low pressure begins to be worth reporting)."""
    level = "low"
    for name in PRESSURE_LEVELS[1:]:
        if used_fraction >= thresholds[name]:
            level = name
    return level


def validate_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    missing = [name for name in PRESSURE_LEVELS if name not in thresholds]
    if missing:
        raise ValueError(f"memory pressure thresholds need the levels {', '.join(missing)}")
    values = [float(thresholds[name]) for name in PRESSURE_LEVELS]
    if any(not 0.0 <= v <= 1.0 for v in values) or values != sorted(values):
        raise ValueError(f"memory pressure thresholds must rise within [0, 1] from low to critical, got {values}")
    return dict(zip(PRESSURE_LEVELS, values))


#: The noise floor of the plugin's package passes, per reading: module-state readings move by a few hundred bytes
#: between passes without anything being kept (dict resizes, interned strings, caches of the tooling), so a step
#: within it counts as no change, for the leak score and the trend alike. Per-test leaks smaller than this are
#: the hunt's to find (tracemalloc, per run), and a hunt's growth is charged to the packages it was allocated in.
PASS_NOISE_BYTES = 1024.0


def _meminfo() -> tuple[float, float] | None:
    """(MemTotal, MemAvailable) in bytes from ``/proc/meminfo``; None where it cannot be read (psutil then)."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            text = meminfo.read()
        fields = {}
        for line in text.splitlines():
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemAvailable"):
                fields[name] = float(rest.split()[0]) * 1024
        return fields[b"MemTotal"], fields[b"MemAvailable"]
    except (OSError, ValueError, IndexError, KeyError):
        return None


def _system_usage() -> float:
    read = _meminfo()
    if read is not None and read[0] > 0:
        total, available = read
        return round((total - available) / total * 100, 1) / 100.0  # (psutil rounds its percent to 0.1)
    import psutil

    return float(psutil.virtual_memory().percent) / 100.0


def _available_memory() -> float:
    read = _meminfo()
    if read is not None:
        return read[1]
    import psutil

    return float(psutil.virtual_memory().available)


class MemoryMonitor:
    """Low-level readings plus the leak/trend/statistics analysis, with the loader's configurable thresholds."""

    def __init__(self, thresholds: Mapping[str, float] | None = None, *, leak_threshold: float = 0.1,
                 leak_reference_bytes: float = 1024 * 1024, noise_bytes: float = 0.0,
                 system_usage: Callable[[], float] | None = None,
                 available_memory: Callable[[], float] | None = None) -> None:
        #: The share of system memory in use (0..1), read for the pressure level; replaceable.
        self.system_usage = system_usage or _system_usage
        #: Bytes of system memory still available; replaceable.
        self.available_memory = available_memory or _available_memory
        self._memory_thresholds = validate_thresholds(thresholds or DEFAULT_PRESSURE_THRESHOLDS)
        self.leak_threshold = leak_threshold
        self.leak_reference_bytes = leak_reference_bytes
        self.noise_bytes = noise_bytes

    @property
    def memory_thresholds(self) -> dict[str, float]:
        return dict(self._memory_thresholds)

    def get_current_memory_usage(self) -> float:
        """Bytes resident for this process (RSS)."""
        return float(current_rss())

    def get_memory_footprint(self, module_name: str) -> float:
        """Bytes the package of ``module_name`` keeps reachable from its module state (0 if not imported)."""
        return float(package_state_bytes(module_name))

    def get_system_memory_usage(self) -> float:
        """Share of system memory in use, 0..1 (``system_usage``: ``/proc/meminfo``'s, as psutil's
        ``virtual_memory().percent``, unless replaced)."""
        return float(self.system_usage())

    def get_available_memory(self) -> float:
        """Bytes of system memory available (``available_memory``: ``MemAvailable``, psutil's ``available``)."""
        return float(self.available_memory())

    def get_memory_pressure_level(self) -> str:
        return pressure_level(self.get_system_memory_usage(), self._memory_thresholds)

    def detect_memory_leak(self, memory_history: History) -> tuple[bool, float]:
        return analysis.detect_leak(memory_history, threshold=self.leak_threshold,
                                    reference_bytes=self.leak_reference_bytes, noise_bytes=self.noise_bytes)

    def analyze_memory_trend(self, memory_history: History) -> str:
        return analysis.memory_trend(memory_history, noise_bytes=self.noise_bytes)

    def calculate_memory_statistics(self, memory_history: History) -> dict[str, float]:
        return analysis.memory_statistics(memory_history)

    def analyze(self, memory_history: History) -> analysis.HistoryAnalysis:
        return analysis.analyze(memory_history, threshold=self.leak_threshold,
                                reference_bytes=self.leak_reference_bytes, noise_bytes=self.noise_bytes)
