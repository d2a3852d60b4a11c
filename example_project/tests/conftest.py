import pytest
from inventory_app.service import InventoryService
from inventory_app.store import InventoryStore, sample_catalog


@pytest.fixture
def store():
    with InventoryStore() as store:
        store.import_csv(sample_catalog(40))
        yield store


@pytest.fixture
def service(store):
    return InventoryService(store)
