"""Results of expensive subprocess runs, computed once per test session and shared by pytest-xdist's workers.

Under xdist every worker sets up a module-scoped fixture for itself: a fixture that runs a whole pytest session in
a subprocess (the leak corpus, the example project) ran once per worker, N times at ``-n N``. Here the first worker
that needs a result computes it under a file lock in the directory all workers of the session share
(``tmp_path_factory.getbasetemp().parent``) and stores it there as JSON; the others wait on the lock and read that
file (the pattern of pytest-xdist's docs, "Making session-scoped fixtures execute only once"). What they read is the
real result of the one run, JSON-encoded. Without xdist the result is simply computed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str,
                     produce: Callable[[Path], Any]) -> Any:
    """``produce(directory)``, run once per session; its result must be JSON-able and is returned as JSON decodes it.

    ``directory`` is a new directory for the run's files; it lives as long as the session's temporary directories,
    so the result may name files in it. A run that raises stores nothing: the next worker that needs it runs it
    again (and fails on its own).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # getbasetemp().parent is then shared by every session: no cache
        return json.loads(json.dumps(produce(tmp_path_factory.mktemp(name))))
    shared = tmp_path_factory.getbasetemp().parent
    stored = shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not stored.is_file():
            result = json.dumps(produce(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=shared))))
            stored.write_text(result)
        return json.loads(stored.read_text())
