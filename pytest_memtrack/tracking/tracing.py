"""tracemalloc's C functions (``is_tracing``, ``start``, ``stop``, ``get_traced_memory``,
``get_tracemalloc_memory``) without the ``tracemalloc`` module's own imports: it imports pickle, ~2 ms of every
session's start-up, for snapshots only a hunt takes (the hunt's modules import ``tracemalloc`` itself)."""

from __future__ import annotations

try:
    import _tracemalloc as tracemalloc
except ImportError:  # (not CPython)
    import tracemalloc  # type: ignore[no-redef]

__all__ = ["tracemalloc"]
