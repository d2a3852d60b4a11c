"""A real Prometheus (Debian's ``prometheus`` package, installed by .ci/run) scrapes the live server's ``/metrics``
with the scrape config the README gives, token included, and its query API returns our figures."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from pytest_memtrack import LazyLoader
from pytest_memtrack.server.sources import LiveSource
from pytest_memtrack.server.transport import start_server
from pytest_memtrack.tracking.loader import reset_lazy_loader

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
#: How long Prometheus may take to start and scrape before the test gives up (a safeguard, not a measurement).
GIVE_UP_AFTER = 90.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                       reason="the prometheus binary is not installed (apt-get install prometheus; .ci/run does)"),
]

CONFIG = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: memtrack
    scrape_interval: 1s
    metrics_path: /metrics
    authorization:
      credentials: {token}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(port: int, expression: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return []  # not up yet


def test_prometheus_scrapes_the_live_server_and_answers_queries_with_our_figures(tmp_path):
    loader = LazyLoader()
    for step in range(12):
        loader.record_readings({"growing.pkg": 1_000_000.0 * (1 + step)}, timestamp=1000.0 + step)
    previous = reset_lazy_loader(loader)
    web_port = _free_port()
    try:
        with start_server(LiveSource(), "127.0.0.1", 0, token="scrape-t0ken") as running:
            config = tmp_path / "prometheus.yml"
            config.write_text(CONFIG.format(token="scrape-t0ken", port=running.port))
            log = (tmp_path / "prometheus.log").open("wb")
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{web_port}"], stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + GIVE_UP_AFTER
                current: list[dict[str, Any]] = []
                while time.monotonic() < deadline and prometheus.poll() is None:
                    current = _query(web_port, 'memtrack_package_memory_current_bytes{package="growing.pkg"}')
                    if current:
                        break
                    time.sleep(0.5)
                log.flush()
                assert current, ("Prometheus never returned the metric; its log:\n"
                                 + (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])
                assert float(current[0]["value"][1]) == 12_000_000.0
                assert current[0]["metric"]["job"] == "memtrack"
                up = _query(web_port, 'up{job="memtrack"}')
                assert up and up[0]["value"][1] == "1"  # the scrape passed the Host check and the token
                ttl = _query(web_port, "memtrack_package_time_to_memory_limit_seconds")
                assert ttl and float(ttl[0]["value"][1]) > 0
            finally:
                prometheus.terminate()
                try:
                    prometheus.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    prometheus.kill()
                    prometheus.wait()
                log.close()
    finally:
        reset_lazy_loader(previous)
