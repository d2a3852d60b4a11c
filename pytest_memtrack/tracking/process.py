"""The process's memory per test: RSS and its high-water mark, read cheaply enough to take around every test."""

from __future__ import annotations

import os
import sys

import psutil


class ProcessMemory:
    """Per-test RSS and peak RSS, read cheaply: Linux's ``/proc/self/statm`` and ``VmHWM`` through file
    descriptors kept open (a few microseconds a reading; psutil elsewhere). The peak is the high-water mark,
    reset before each test through ``/proc/self/clear_refs``."""

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
            text = os.pread(self._status, 4096, 0)
            start = text.index(b"VmHWM:")
            return int(text[start + 6:text.index(b"kB", start)]) * 1024
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        for fd in (self._statm, self._status, self._clear):
            if fd is not None:
                os.close(fd)
        self._statm = self._status = self._clear = None
