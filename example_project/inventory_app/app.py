"""The application's packages, loaded lazily through the process's lazy loader.

Nothing below imports anything yet: each name is a module proxy, and the first attribute access
(``json.dumps``, ``jinja2.Environment`` ...) imports the real package and records its import time and
memory footprint in the loader. Under ``pytest --memtrack`` the plugin installs its own loader for the
session before tests are collected, so these packages appear in the memory report.
"""

from __future__ import annotations

from pytest_memtrack import get_lazy_loader

loader = get_lazy_loader()

json = loader.lazy("json")
csv = loader.lazy("csv")
decimal = loader.lazy("decimal")
sqlite3 = loader.lazy("sqlite3")
ElementTree = loader.lazy("xml.etree.ElementTree")
jinja2 = loader.lazy("jinja2")

#: The packages above, for the monitoring helper.
LAZY_PACKAGES = ("json", "csv", "decimal", "sqlite3", "xml.etree.ElementTree", "jinja2")

_templates: dict[str, object] = {}  # compiled once per template name, then reused (bounded by the names below)

TEMPLATE_SOURCES = {
    "stock_report.html": (
        "<!doctype html><title>Stock report</title><h1>Stock report ({{ items|length }} items)</h1>"
        "<table><tr><th>SKU</th><th>Name</th><th>Qty</th><th>Unit price</th><th>Value</th></tr>"
        "{% for item in items %}<tr><td>{{ item.sku }}</td><td>{{ item.name }}</td><td>{{ item.quantity }}</td>"
        "<td>{{ item.unit_price }}</td><td>{{ item.value }}</td></tr>{% endfor %}</table>"
        "<p>Total stock value: {{ total }}</p>"
    ),
    "quote.txt": "{{ quantity }} x {{ sku }} at {{ unit_price }} = {{ total }} (incl. VAT)",
}


def template(name: str):
    """The compiled jinja2 template ``name`` (a dict cache filled once: warm, not leaking)."""
    compiled = _templates.get(name)
    if compiled is None:
        environment = jinja2.Environment(autoescape=name.endswith(".html"))
        compiled = _templates[name] = environment.from_string(TEMPLATE_SOURCES[name])
    return compiled
