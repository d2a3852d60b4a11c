"""Options and ini values: parsing and resolution (command line first, then ini), as pure functions.

Every option defaults to ``None`` so an unset command-line option never hides its ini twin
(pytest-memray issue #135). Parsers raise ``pytest.UsageError`` with a sentence naming the option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from pytest_memtrack.units import SIZE_UNITS, parse_decimal, shown

T = TypeVar("T")



def resolve(config: pytest.Config, name: str, parse: Callable[[str, str], T], default: T) -> T:
    """The value of setting ``name``: the command-line option, else the ini key, else ``default``.

    ``parse(raw, label)`` turns the raw text into a value or raises ``pytest.UsageError`` naming ``label``.
    """
    raw = config.getoption(name, default=None)
    label = "--" + name.replace("_", "-")
    if raw is None:
        raw = read_ini(config, name)
        label = f"ini option {name!r}"
        if raw in (None, "", []):
            return default
    if not isinstance(raw, str):
        return raw  # already parsed by the option's type=
    return parse(raw, label)


def read_ini(config: pytest.Config, name: str) -> Any:
    """``config.getini(name)``; None when the key is not registered (feature module absent). pytest's own
    conversion of a ``bool`` key fails without naming the key ("invalid truth value 'maybe'"): that is a usage
    error naming it here."""
    try:
        return config.getini(name)
    except (ValueError, pytest.UsageError) as exc:
        if str(exc).startswith("unknown configuration value"):
            return None
        raise pytest.UsageError(f"ini option {name!r} must be true or false ({exc}).") from None


def label_of(config: pytest.Config, name: str) -> str | None:
    """Where setting ``name`` was given: its command-line flag, ``ini option 'name'``, or None (the default)."""
    if config.getoption(name, default=None) is not None:
        return "--" + name.replace("_", "-")
    if read_ini(config, name) not in (None, "", []):
        return f"ini option {name!r}"
    return None


def parse_bool(raw: str, label: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise pytest.UsageError(f"{label} must be true or false, not {raw!r}.")


def parse_score(raw: str, label: str) -> float:
    """A leak score limit: a number in [0, 1]."""
    value = parse_decimal(raw)
    if value is None or not 0.0 <= value <= 1.0:
        raise pytest.UsageError(f"{label} must be a number between 0 and 1, not {shown(raw)}.")
    return value


#: The largest count a setting takes (runs, history entries): beyond any real use, and far below what SQLite or a
#: C long holds.
MAX_COUNT = 1_000_000_000


def parse_positive_int(raw: str, label: str) -> int:
    """A whole number from 1 to :data:`MAX_COUNT`, written in ASCII digits (``int()`` also reads ``'١'``, and
    fails with a ValueError of its own on 4,301 digits)."""
    digits = raw.strip().removeprefix("+")
    significant = digits.lstrip("0")
    if not re.fullmatch(r"[0-9]+", digits, re.ASCII) or not significant:
        raise pytest.UsageError(f"{label} must be a positive whole number, not {shown(raw)}.")
    if len(significant) > len(str(MAX_COUNT)) or int(significant) > MAX_COUNT:
        raise pytest.UsageError(f"{label} must be a positive whole number up to {MAX_COUNT:,}, not {shown(raw)}.")
    return int(significant)


def parse_non_negative_float(raw: str, label: str) -> float:
    value = parse_decimal(raw)
    if value is None or value < 0:
        raise pytest.UsageError(f"{label} must be a non-negative number, not {shown(raw)}.")
    return value


def parse_time_budget(raw: str, label: str) -> float:
    """Seconds of wall time, 0 meaning no limit."""
    value = parse_decimal(raw)
    if value is None or value < 0:
        raise pytest.UsageError(f"{label} must be a number of seconds such as 60 or 2.5, or 0 for no limit, "
                                f"not {shown(raw)}.")
    return value


def parse_fraction(raw: str, label: str) -> float:
    """A share in (0, 1], e.g. an overhead budget of 0.05 (5%)."""
    text = raw.strip()
    value = parse_decimal(text[:-1]) if text.endswith("%") else parse_decimal(text)
    if value is None:
        raise pytest.UsageError(f"{label} must be a fraction such as 0.05 or 5%, not {shown(raw)}.")
    if text.endswith("%"):
        value /= 100
    if not 0.0 < value <= 1.0:
        raise pytest.UsageError(f"{label} must be a fraction in (0, 1] such as 0.05 or 5%, not {shown(raw)}.")
    return value


#: The largest byte size a setting takes (1 TiB): a leak reference or native floor beyond it means nothing, and a
#: float of 1 followed by 309 zeros would overflow on the way to an int.
MAX_SIZE = 1024**4


def parse_size(raw: str, label: str) -> int:
    """A byte size: ``4096``, ``64KB``, ``1.5MiB`` (binary units), up to :data:`MAX_SIZE`."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", raw, re.ASCII)
    unit = (match.group(2).lower() or "b") if match else None
    if not match or unit not in SIZE_UNITS:
        raise pytest.UsageError(f"{label} must be a size such as 4096, 64KB or 1MB, not {shown(raw)}.")
    size = float(match.group(1)) * SIZE_UNITS[unit]
    if not size <= MAX_SIZE:  # also inf
        raise pytest.UsageError(f"{label} must be a size of at most 1 TiB (such as 64KB or 1MB), not {shown(raw)}.")
    return int(size)


def parse_budget(raw: str, label: str) -> int:
    """A memory budget: a byte size (``parse_size``) above zero."""
    size = parse_size(raw, label)
    if size <= 0:
        raise pytest.UsageError(f"{label} must be a size above zero such as 512MB or 2GB, not {shown(raw)}.")
    return size


def parse_writable_path(raw: str, label: str, what: str = "a report") -> str:
    """A path ``what`` can be written to: a regular file or none yet, in a directory that exists and is writable,
    or that can be created (its nearest existing ancestor is a writable directory); checked before any test runs.
    """
    if not raw.strip():
        raise pytest.UsageError(f"{label} must name a file, not an empty string.")
    path = os.path.abspath(os.path.expanduser(raw))
    if os.path.isdir(path):
        raise pytest.UsageError(f"{label} must name a file, but {raw!r} is a directory.")
    cannot = f"{label}: cannot write {what} to {raw!r}"
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise pytest.UsageError(f"{cannot}: it is not a regular file (a device, pipe or socket).")
        if not os.access(path, os.W_OK):
            raise pytest.UsageError(f"{cannot}: the file is not writable.")
    directory = os.path.dirname(path)
    probe = directory
    while not os.path.exists(probe):  # the nearest existing ancestor: where the missing directories get created
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise pytest.UsageError(f"{cannot}: {probe!r} is a file, not a directory.")
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == directory:
            raise pytest.UsageError(f"{cannot}: the directory {directory!r} is not writable.")
        raise pytest.UsageError(f"{cannot}: the directory {directory!r} does not exist, and it cannot be created "
                                f"because {probe!r} is not writable.")
    return path


@dataclass(frozen=True)
class Settings:
    """The resolved core settings of a session (feature modules resolve their own)."""

    enabled: bool = False
    json_path: str | None = None
    max_leak_score: float | None = None
    leak_threshold: float = 0.1
    max_runs: int = 10
    warmup_runs: int = 2
    history_size: int = 100
    check_interval: float | None = None
    overhead_budget: float = 0.02
    leak_reference: int = 64 * 1024
    native_floor: int | None = None  # None: the native reading's own floor (hunt.native.DEFAULT_FLOOR)
    hunt_budget: float = 60.0  # seconds of wall time for the repeats of one hunted test; 0: no limit
    trace_all: bool = False
    measure_all: bool = False
    memory_budget: int | None = None  # bytes; None: the process's RSS plus the system's available memory
    auto_unload: bool = False
    unload_idle: float = 300.0  # seconds a lazy package must be idle before auto-unload may unload it
    trace_hunts: bool = False  # hunt under tracing from the reported run on, without the untraced screen

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def resolve_settings(config: pytest.Config) -> Settings:
    """Read every core setting, failing with a ``UsageError`` sentence on the first bad one."""
    d = Settings()
    max_runs = resolve(config, "memtrack_max_runs", parse_positive_int, d.max_runs)
    warmup = resolve(config, "memtrack_warmup_runs", parse_positive_int, d.warmup_runs)
    if max_runs < warmup + 3:
        raise pytest.UsageError(_runs_advice(config, max_runs, warmup))
    return Settings(
        enabled=resolve(config, "memtrack", parse_bool, False),
        json_path=resolve(config, "memtrack_json", parse_writable_path, None),
        max_leak_score=resolve(config, "memtrack_max_leak_score", parse_score, None),
        leak_threshold=resolve(config, "memtrack_leak_threshold", parse_score, d.leak_threshold),
        max_runs=max_runs,
        warmup_runs=warmup,
        history_size=resolve(config, "memtrack_history_size", parse_positive_int, d.history_size),
        check_interval=resolve(config, "memtrack_check_interval", parse_non_negative_float, None),
        overhead_budget=resolve(config, "memtrack_overhead_budget", parse_fraction, d.overhead_budget),
        leak_reference=resolve(config, "memtrack_leak_reference", parse_size, d.leak_reference),
        native_floor=resolve(config, "memtrack_native_floor", parse_size, d.native_floor),
        hunt_budget=resolve(config, "memtrack_hunt_budget", parse_time_budget, d.hunt_budget),
        trace_all=resolve(config, "memtrack_trace_all", parse_bool, False),
        trace_hunts=resolve(config, "memtrack_trace_hunts", parse_bool, False),
        measure_all=resolve(config, "memtrack_measure_all", parse_bool, False),
        memory_budget=resolve(config, "memtrack_memory_budget", parse_budget, None),
        auto_unload=resolve(config, "memtrack_auto_unload", parse_bool, False),
        unload_idle=resolve(config, "memtrack_unload_idle", parse_non_negative_float, d.unload_idle),
    )


def _runs_advice(config: pytest.Config, max_runs: int, warmup: int) -> str:
    """The sentence for warm-up runs that leave fewer than 3 measured runs: it leads with the setting the user gave
    (a huge --memtrack-warmup-runs is not a --memtrack-max-runs mistake) and says what to change to what."""
    max_label = label_of(config, "memtrack_max_runs")
    warm_label = label_of(config, "memtrack_warmup_runs")
    max_name = max_label or "--memtrack-max-runs"
    warm_name = warm_label or "--memtrack-warmup-runs"
    lower_warmup = f"lower {warm_name} to {max_runs - 3} or less" if max_runs - 3 >= 1 else None
    raise_max = f"raise {max_name} to {warmup + 3} or more" if warmup + 3 <= MAX_COUNT else None
    if warm_label and not max_label:
        head = (f"{warm_name} ({warmup}) leaves fewer than 3 measured runs within the {max_runs} runs of "
                f"{max_name} (its default)")
        fixes = [lower_warmup, raise_max]
    else:
        given = "" if warm_label else " (its default)"
        head = (f"{max_name} ({max_runs}) must leave at least 3 measured runs after the {warmup} warm-up runs of "
                f"{warm_name}{given}")
        fixes = [raise_max, lower_warmup]
    return f"{head}: {', or '.join(fix for fix in fixes if fix)}."
