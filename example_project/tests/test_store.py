"""Ordinary tests: not hunted for leaks (no max_leak_score marker, no global limit)."""

from decimal import Decimal
from xml.etree import ElementTree

from inventory_app.store import InventoryStore, Item, sample_catalog


def test_a_csv_catalog_is_imported_row_by_row():
    with InventoryStore() as store:
        assert store.import_csv(sample_catalog(5)) == 5
        assert [item.sku for item in store.items()] == ["SKU-0000", "SKU-0001", "SKU-0002", "SKU-0003", "SKU-0004"]


def test_an_item_is_valued_at_quantity_times_unit_price_in_cents(store):
    store.upsert(Item("SKU-9999", "Gadget", 3, Decimal("2.335")))
    assert store.get("SKU-9999").value == Decimal("7.00")


def test_the_xml_export_lists_every_item_with_its_attributes(store):
    root = ElementTree.fromstring(store.to_xml())
    assert len(root) == 40
    assert root[0].attrib["sku"] == "SKU-0000" and root[0].text == "Widget model 0"
