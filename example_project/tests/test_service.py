"""The request handler. The two tests marked max_leak_score are repeated under ``pytest --memtrack``."""

import pytest
from inventory_app.monitoring import memory_report
from inventory_app.service import Request

QUOTE_SKUS = [f"SKU-{n:04d}" for n in range(40)]


def test_items_are_listed_as_json(service):
    response = service.handle(Request("GET", "/items"))
    assert response.status == 200
    assert len(response.json()) == 40


def test_an_unknown_route_answers_404(service):
    assert service.handle(Request("GET", "/nowhere")).status == 404


@pytest.mark.max_leak_score(0.1)
def test_quotes_use_a_warm_price_cache(service):
    # unit_price_with_vat is an lru_cache(maxsize=128) and templates are compiled once: both fill up during
    # the warm-up runs and then stay the same size, so this test is not leaking.
    for sku in QUOTE_SKUS:
        response = service.handle(Request("GET", f"/items/{sku}/quote?qty=3"))
        assert response.status == 200
    assert response.json()["text"].startswith("3 x SKU-0039 at ")


@pytest.mark.max_leak_score(0.1)
def test_stock_report_can_be_downloaded_again(service):
    # Leaks: every report is kept by request id in service._report_downloads and never evicted.
    request = Request("GET", "/reports/stock")
    report = service.handle(request)
    assert report.status == 200 and b"Stock report (40 items)" in report.body
    assert service.handle(Request("GET", f"/reports/{request.request_id}")).body == report.body


def test_the_memory_report_prints_the_spec_figures(service, capsys):
    service.handle(Request("GET", "/items"))
    summary = memory_report(packages=("json",))
    out = capsys.readouterr().out
    assert "Total current memory: " in out and "System memory pressure: " in out
    assert "json (loaded): current " in out
    assert summary["loaded_packages"] >= 1
