"""``python -m inventory_app [REQUESTS]``: serve some stock reports, then print the memory report.

Every stock report leaks (see ``service.py``), so with enough requests the ``inventory_app`` package's
leak score rises: ``python -m inventory_app 400``.
"""

from __future__ import annotations

import sys
import time

from inventory_app.app import LAZY_PACKAGES, loader
from inventory_app.monitoring import memory_report
from inventory_app.service import InventoryService, Request
from inventory_app.store import InventoryStore, sample_catalog


def main(argv: list[str]) -> int:
    requests = int(argv[0]) if argv else 200
    loader.register("inventory_app")  # track the app's own module state too
    with InventoryStore() as store:
        store.import_csv(sample_catalog())
        service = InventoryService(store)
        for n in range(requests):
            service.handle(Request("GET", "/reports/stock"))
            if n % 20 == 0:
                loader.update_all_memory_metrics()  # one reading per package
                time.sleep(0.01)
    memory_report(packages=LAZY_PACKAGES + ("inventory_app",))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
