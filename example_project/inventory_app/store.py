"""Stock storage: an SQLite database, CSV import, XML and JSON export."""

from __future__ import annotations

import io
from dataclasses import dataclass

from inventory_app.app import ElementTree, csv, decimal, json, sqlite3

CENTS = "0.01"


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    quantity: int
    unit_price: decimal.Decimal

    @property
    def value(self) -> decimal.Decimal:
        return (self.unit_price * self.quantity).quantize(decimal.Decimal(CENTS))


class InventoryStore:
    """Items in an SQLite database (in memory by default). Close it when done."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS items (sku TEXT PRIMARY KEY, name TEXT NOT NULL, "
                         "quantity INTEGER NOT NULL, unit_price TEXT NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> InventoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, item: Item) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
                             (item.sku, item.name, item.quantity, str(item.unit_price)))

    def import_csv(self, text: str) -> int:
        """Add the rows of a ``sku,name,quantity,unit_price`` CSV document; returns how many."""
        rows = list(csv.DictReader(io.StringIO(text)))
        for row in rows:
            self.upsert(Item(row["sku"], row["name"], int(row["quantity"]), decimal.Decimal(row["unit_price"])))
        return len(rows)

    def get(self, sku: str) -> Item | None:
        row = self._db.execute("SELECT sku, name, quantity, unit_price FROM items WHERE sku = ?", (sku,)).fetchone()
        return Item(row[0], row[1], row[2], decimal.Decimal(row[3])) if row else None

    def items(self) -> list[Item]:
        rows = self._db.execute("SELECT sku, name, quantity, unit_price FROM items ORDER BY sku").fetchall()
        return [Item(sku, name, quantity, decimal.Decimal(price)) for sku, name, quantity, price in rows]

    def total_value(self) -> decimal.Decimal:
        return sum((item.value for item in self.items()), decimal.Decimal("0.00"))

    def to_json(self) -> str:
        return json.dumps([{"sku": i.sku, "name": i.name, "quantity": i.quantity, "unit_price": str(i.unit_price)}
                           for i in self.items()])

    def to_xml(self) -> str:
        root = ElementTree.Element("inventory")
        for item in self.items():
            ElementTree.SubElement(root, "item", sku=item.sku, quantity=str(item.quantity),
                                   unit_price=str(item.unit_price)).text = item.name
        return ElementTree.tostring(root, encoding="unicode")


def sample_catalog(count: int = 40) -> str:
    """A CSV catalog of ``count`` items, for the demo and the tests."""
    lines = ["sku,name,quantity,unit_price"]
    lines += [f"SKU-{n:04d},Widget model {n},{(n * 7) % 50 + 1},{(n % 17) + 1}.{n % 100:02d}" for n in range(count)]
    return "\n".join(lines) + "\n"
