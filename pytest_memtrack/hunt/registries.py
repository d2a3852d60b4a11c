"""Holders that live in the interpreter's own state rather than in a module: registries Python code adds to through
a function call and that nothing names (``atexit.register``, ``codecs.register``, a context variable's value,
``signal.signal``).

Module state is found by name (``names``); these are not reachable that way, so each is read through the API
that fills it: a count where the registry has one (growing by one entry a run is the leak), else the objects it
holds now (a chain of signal handlers each wrapping the last: the newest is the root of everything kept).
"""

from __future__ import annotations

import atexit
import codecs
import contextvars
import gc
import signal
from collections.abc import Callable
from typing import Any

#: Names the registries go by in a holder's name: what a user would search the code for.
ATEXIT = ("atexit", "<callbacks registered with atexit.register>")
CODECS = ("codecs", "<search functions registered with codecs.register>")
CONTEXT = ("contextvars", "<variables set in the current context>")


def _find_codec_search_path() -> list[Any] | None:
    """The interpreter's list of codec search functions, which no attribute exposes: register a function, find
    the one list that refers to it, take the function out again."""
    def probe(name: str) -> None:
        return None

    try:
        codecs.register(probe)
        holders = [obj for obj in gc.get_referrers(probe) if type(obj) is list and obj and obj[-1] is probe]
    except Exception:
        return None
    finally:
        try:
            codecs.unregister(probe)
        except Exception:
            pass
    return holders[0] if len(holders) == 1 else None


#: Found once, at import: later the hunt freezes the heap, and ``gc.get_referrers`` does not see frozen objects.
_codec_search_path = _find_codec_search_path()


def _codec_search_functions() -> int | None:
    return None if _codec_search_path is None else len(_codec_search_path)


def _atexit_callbacks() -> int | None:
    count: Callable[[], int] | None = getattr(atexit, "_ncallbacks", None)
    return count() if count is not None else None


def _context_variables() -> int:
    return len(contextvars.copy_context())


_SIZES: dict[tuple[str, str], Callable[[], int | None]] = {
    ATEXIT: _atexit_callbacks, CODECS: _codec_search_functions, CONTEXT: _context_variables}


def registry_sizes() -> dict[tuple[str, ...], tuple[int, str]]:
    """Entries in each interpreter registry now, in ``retention.named_sizes``'s shape: compared before and after a
    hunt's runs, one that gained an entry every run is the holder."""
    sizes: dict[tuple[str, ...], tuple[int, str]] = {}
    for name, read in _SIZES.items():
        try:
            size = read()
        except Exception:
            continue
        if size is not None:
            sizes[name] = (size, "registry")
    return sizes


def _signal_names() -> dict[int, str]:
    names = {}
    for number in sorted(signal.valid_signals()):
        try:
            names[int(number)] = signal.Signals(number).name
        except ValueError:
            continue
    return names


def registry_roots() -> dict[int, str]:
    """id of each object the interpreter keeps for Python code outside any module -> how to find it: the Python
    handler of each signal (``signal.getsignal(SIGUSR1)``), and each context variable set in the current context
    with its value (``contextvars: request_id``)."""
    roots: dict[int, str] = {}
    for number, name in _signal_names().items():
        try:
            handler = signal.getsignal(number)
        except (ValueError, OSError):
            continue
        if callable(handler):
            roots[id(handler)] = f"signal.getsignal({name})"
    try:
        for variable, value in contextvars.copy_context().items():
            label = f"contextvars: {variable.name}"
            roots.setdefault(id(variable), label)
            roots.setdefault(id(value), label)
    except Exception:
        pass
    return roots
