"""Request handling: a tiny router in front of the inventory store.

Routes:

* ``GET /items``                       all items as JSON
* ``GET /items/<sku>/quote?qty=N``     a price quote; unit prices incl. VAT come from a warm ``lru_cache``
* ``GET /reports/stock``               an HTML stock report, kept for download by request id
* ``GET /reports/<request_id>``        download a report rendered earlier

The stock report path has a memory leak on purpose, for the demo: every rendered report is kept in a
module-level dict keyed by the request id, and nothing ever evicts it. Every request has a new id, so the
dict grows by one report per request for the life of the process.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from inventory_app.app import decimal, json, template
from inventory_app.store import CENTS, InventoryStore

VAT_RATE = "0.20"

#: Rendered stock reports by request id, so ``GET /reports/<request_id>`` can serve them again.
_report_downloads: dict[str, bytes] = {}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    def json(self):
        return json.loads(self.body)


@functools.lru_cache(maxsize=128)
def unit_price_with_vat(unit_price: str) -> decimal.Decimal:
    """Unit price including VAT, rounded to cents (cached: a catalog has few distinct prices)."""
    price = decimal.Decimal(unit_price) * (1 + decimal.Decimal(VAT_RATE))
    return price.quantize(decimal.Decimal(CENTS), rounding=decimal.ROUND_HALF_UP)


class InventoryService:
    def __init__(self, store: InventoryStore) -> None:
        self.store = store

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, f"method {request.method} not allowed")
        url = urlsplit(request.path)
        parts = [p for p in url.path.split("/") if p]
        if parts == ["items"]:
            return Response(200, self.store.to_json().encode("utf-8"))
        if len(parts) == 3 and parts[0] == "items" and parts[2] == "quote":
            return self._quote(parts[1], parse_qs(url.query))
        if parts == ["reports", "stock"]:
            return self._stock_report(request)
        if len(parts) == 2 and parts[0] == "reports":
            body = _report_downloads.get(parts[1])
            return Response(200, body, "text/html") if body is not None else _error(404, "no such report")
        return _error(404, f"no route for {url.path}")

    def _quote(self, sku: str, query: dict[str, list[str]]) -> Response:
        item = self.store.get(sku)
        if item is None:
            return _error(404, f"unknown item {sku}")
        try:
            quantity = int(query.get("qty", ["1"])[0])
        except ValueError:
            return _error(400, "qty must be a whole number")
        unit = unit_price_with_vat(str(item.unit_price))
        total = unit * quantity
        text = template("quote.txt").render(quantity=quantity, sku=sku, unit_price=unit, total=total)
        return Response(200, json.dumps({"sku": sku, "quantity": quantity, "unit_price": str(unit),
                                         "total": str(total), "text": text}).encode("utf-8"))

    def _stock_report(self, request: Request) -> Response:
        items = self.store.items()
        html = template("stock_report.html").render(items=items, total=self.store.total_value())
        body = html.encode("utf-8")
        _report_downloads[request.request_id] = html.encode("utf-8")  # LEAK (on purpose): never evicted
        return Response(200, body, "text/html")


def _error(status: int, message: str) -> Response:
    return Response(status, json.dumps({"error": message}).encode("utf-8"))
