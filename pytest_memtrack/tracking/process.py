"""The process's memory per test: RSS and its high-water mark, read cheaply enough to take around every test."""

from __future__ import annotations

import os
import sys

try:
    from resource import RUSAGE_SELF, getrusage
except ImportError:  # (not on Windows: the peak is Linux's only)
    getrusage = None  # type: ignore[assignment]


def _open(path: str, flags: int) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return os.open(path, flags)
    except OSError:
        return None


#: Opened once, when the plugin loads (a descriptor opened during a hunted test would read as one it leaked).
_STATM = _open("/proc/self/statm", os.O_RDONLY)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int:
    """This process's resident set size in bytes: ``/proc/self/statm`` (~1 µs), else psutil's (~10 µs)."""
    return rss_and_shared()[0]


def rss_and_shared() -> tuple[int, int]:
    """(resident, resident shared or file-backed) bytes: ``/proc/self/statm``'s second and third fields (what
    psutil's ``memory_info()`` gives as ``rss`` and ``shared``, at a tenth of its cost), else psutil's."""
    if _STATM is not None:
        try:
            fields = os.pread(_STATM, 128, 0).split()
            return int(fields[1]) * _PAGE, int(fields[2]) * _PAGE
        except (OSError, ValueError, IndexError):
            pass
    import psutil

    memory = psutil.Process().memory_info()
    return int(memory.rss), int(getattr(memory, "shared", 0))


def thread_count() -> int:
    """OS threads of this process: the entries of ``/proc/self/task`` (~2 µs; psutil reads ``status``, ~10 µs)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import psutil

        return int(psutil.Process().num_threads())


class ProcessMemory:
    """Per-test RSS and peak RSS, read cheaply: Linux's ``/proc/self/statm`` and ``VmHWM`` through file
    descriptors kept open (a few microseconds a reading; psutil elsewhere). The peak is the high-water mark,
    reset before each test through ``/proc/self/clear_refs``. ``start()`` and ``end()`` bracket a test.

    (``getrusage``'s ``ru_maxrss`` would be cheaper than ``/proc/self/status`` but is not the same reading: it
    also holds a mark ``clear_refs`` does not reset, and recent kernels sum ``status``'s counters exactly where
    ``getrusage`` reads them approximately, tens of KiB apart.) ``getrusage`` is used only as a bound: its
    ``ru_maxrss`` is never below the high-water mark as ``statm``'s counters see it, so when it is not above the RSS
    read around the test, the mark is that RSS (to within the kernel's per-CPU counter batching, which ``statm``
    shares) and neither the reset (~4 µs) nor ``/proc/self/status`` (~12 µs, it formats every field) is needed.
    Most tests of most suites take that path; a test whose RSS rose and fell reads ``status``."""

    def __init__(self) -> None:
        self._status = _open("/proc/self/status", os.O_RDONLY)
        self._clear = _open("/proc/self/clear_refs", os.O_WRONLY)
        self.peak_available = self._status is not None and self._clear is not None and self.reset_peak()
        self._rss_at_start = 0

    rss = staticmethod(current_rss)

    def reset_peak(self) -> bool:
        if self._clear is None:
            return False
        try:
            os.write(self._clear, b"5")
            return True
        except OSError:
            return False

    def peak(self) -> int | None:
        if not self.peak_available or self._status is None:
            return None
        try:
            return _status_field(os.pread(self._status, 4096, 0), b"VmHWM:")
        except (OSError, ValueError):
            return None

    def _max_rss_bound(self) -> int:
        """``ru_maxrss`` in bytes: at least the high-water mark (it is the larger of that and the marks of
        threads that ended, which ``clear_refs`` does not reset)."""
        return getrusage(RUSAGE_SELF).ru_maxrss * 1024 if getrusage is not None else sys.maxsize

    def start(self) -> int:
        """Reset the high-water mark and return the RSS: the start of a test. (No reset when the mark cannot
        be above the RSS: it would set the mark to what it is.)"""
        if not self.peak_available:
            return self.rss()
        rss = self.rss()
        if self._max_rss_bound() > rss:
            self.reset_peak()
            rss = self.rss()
        self._rss_at_start = rss
        return rss

    def end(self) -> tuple[int, int | None]:
        """RSS and its high-water mark since ``start()``: the end of a test. When ``ru_maxrss`` bounds the mark
        by the RSS at the start or now, the mark is the larger of those; otherwise one read of
        ``/proc/self/status`` gives both (its ``VmRSS`` is the figure ``statm`` gives, in kB)."""
        if self.peak_available and self._status is not None:
            rss = self.rss()
            known = max(rss, self._rss_at_start)
            if self._max_rss_bound() <= known:
                return rss, known
            try:
                text = os.pread(self._status, 4096, 0)
                return _status_field(text, b"VmRSS:"), _status_field(text, b"VmHWM:")
            except (OSError, ValueError):
                pass
        return self.rss(), self.peak()

    def close(self) -> None:
        for fd in (self._status, self._clear):
            if fd is not None:
                os.close(fd)
        self._status = self._clear = None
        self.peak_available = False


def _status_field(text: bytes, name: bytes) -> int:
    """Bytes of a ``/proc/self/status`` line such as ``VmHWM:   123456 kB`` (ValueError when it is missing)."""
    start = text.index(name) + len(name)
    return int(text[start:text.index(b"kB", start)]) * 1024

