"""The process's memory per test: RSS and its high-water mark, read cheaply enough to take around every test."""

from __future__ import annotations

import os
import sys

import psutil


class ProcessMemory:
    """Per-test RSS and peak RSS, read cheaply: Linux's ``/proc/self/statm`` and ``VmHWM`` through file
    descriptors kept open (a few microseconds a reading; psutil elsewhere). The peak is the high-water mark,
    reset before each test through ``/proc/self/clear_refs``. ``start()`` and ``end()`` bracket a test.

    (``getrusage``'s ``ru_maxrss`` would be cheaper than ``/proc/self/status`` but is not the same reading: it
    also holds a mark ``clear_refs`` does not reset, and recent kernels sum ``status``'s counters exactly where
    ``getrusage`` reads them approximately, tens of KiB apart.)"""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._statm = self._open("/proc/self/statm", os.O_RDONLY)
        self._status = self._open("/proc/self/status", os.O_RDONLY)
        self._clear = self._open("/proc/self/clear_refs", os.O_WRONLY)
        self.peak_available = self._status is not None and self._clear is not None and self.reset_peak()

    @staticmethod
    def _open(path: str, flags: int) -> int | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return os.open(path, flags)
        except OSError:
            return None

    def rss(self) -> int:
        if self._statm is not None:
            try:
                return int(os.pread(self._statm, 128, 0).split()[1]) * self._page
            except (OSError, ValueError, IndexError):
                pass
        return self._process.memory_info().rss

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

    def start(self) -> int:
        """Reset the high-water mark and return the RSS: the start of a test."""
        self.reset_peak()
        return self.rss()

    def end(self) -> tuple[int, int | None]:
        """RSS and its high-water mark since ``start()``: the end of a test. One read of ``/proc/self/status``
        gives both (its ``VmRSS`` is the figure ``statm`` gives, in kB), not one system call each."""
        if self.peak_available and self._status is not None:
            try:
                text = os.pread(self._status, 4096, 0)
                return _status_field(text, b"VmRSS:"), _status_field(text, b"VmHWM:")
            except (OSError, ValueError):
                pass
        return self.rss(), self.peak()

    def close(self) -> None:
        for fd in (self._statm, self._status, self._clear):
            if fd is not None:
                os.close(fd)
        self._statm = self._status = self._clear = None


def _status_field(text: bytes, name: bytes) -> int:
    """Bytes of a ``/proc/self/status`` line such as ``VmHWM:   123456 kB`` (ValueError when it is missing)."""
    start = text.index(name) + len(name)
    return int(text[start:text.index(b"kB", start)]) * 1024

