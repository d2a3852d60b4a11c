"""Writing report files safely: whole or not at all, no litter, and Ctrl-C does not cost a report.

* :func:`write_text_atomic` writes through a temporary file beside the target and ``os.replace``: a crash or a
  concurrent reader never sees half a report, and a failed write leaves the target as it was (absent, or its
  previous content).
* Our temporaries are named ``.NAME.memtrack-tmp-PID-RANDOM``. A writer killed with SIGKILL (or a power cut) cannot
  remove its own, so every write first clears the stale ones in its directory: those whose PID is no longer alive
  and, where ``flock`` exists, whose lock nobody holds (every writer keeps its temporary locked while writing, which
  protects a writer in another PID namespace sharing the directory, whose PID means nothing here).
* :class:`DeferredInterrupt` holds Ctrl-C while the reports are written: the first SIGINT is remembered and the
  writing finishes; a second one raises ``KeyboardInterrupt`` in the write in progress, which then leaves the
  previous file.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import sys
import threading
from types import FrameType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; the PID alone decides
    fcntl = None  # type: ignore[assignment]

TEMPORARY_MARK = ".memtrack-tmp-"
_TEMPORARY = re.compile(r"^\..+\.memtrack-tmp-(\d+)-[0-9a-f]+$")


def temporary_name(target: str) -> str:
    """``.NAME.memtrack-tmp-PID-RANDOM`` for ``target``: hidden, recognisably ours, naming the writing process."""
    return f".{os.path.basename(target)}{TEMPORARY_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    import psutil

    return bool(psutil.pid_exists(pid))


def _locked(path: str) -> bool:
    """Whether some process holds the lock of the temporary at ``path`` (True when that cannot be known)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock we just took
    return False


def clear_stale_temporaries(directory: str) -> list[str]:
    """Remove our temporaries in ``directory`` whose writer is gone; returns their paths. Never raises."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        path = os.path.join(directory, name)
        if pid == os.getpid() or _alive(pid) or _locked(path):
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def describe_os_error(exc: OSError) -> str:
    """``Permission denied: /path/reports``: the reason and the file it concerns, for a warning line."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    The directory is created if missing. On any error (``OSError``, naming the directory when it is the directory
    that cannot be written; an encoding error; ``KeyboardInterrupt``) the temporary file is removed and ``path``
    is left as it was. The new file gets the usual permissions (0o666 minus the umask), so CI artifact uploaders
    and other users can read it.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
    os.makedirs(directory, exist_ok=True)
    clear_stale_temporaries(directory)
    tmp = os.path.join(directory, temporary_name(target))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:  # the directory refuses a new file: say so of the directory, not of our temporary
        raise OSError(exc.errno, exc.strerror, directory) from None
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # "still being written" for clear_stale_temporaries
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            if fcntl is not None:  # POSIX renames an open file; the lock is held until the report is in place
                os.replace(tmp, target)
        if fcntl is None:
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class DeferredInterrupt:
    """``with DeferredInterrupt() as held:`` the first SIGINT only counts (``held.count``), the second raises
    ``KeyboardInterrupt``, later ones only count. Only in the main thread (the only one that receives signals);
    the previous handler is restored on leaving. A SIGINT that is ignored (``SIG_IGN``) stays ignored."""

    NOTICE = b"\nmemtrack: Ctrl-C: finishing the reports first (Ctrl-C again abandons them)\n"

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 2:
            raise KeyboardInterrupt
        if self.count > 2:  # ignored: the abandoned write's cleanup must run to its end
            return
        try:
            os.write(sys.stderr.fileno(), self.NOTICE)  # a raw write: safe inside a signal handler
        except (OSError, ValueError, AttributeError):
            pass

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False
