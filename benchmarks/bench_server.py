"""Benchmark of the bundled HTTP server (not a test): latency of one summary and requests per second.

    python benchmarks/bench_server.py [--packages 1000] [--history 100] [--requests 200] [--clients 8]
                                      [--seconds 3] [--source loader|report]

The source is the real ``LazyLoader`` fed ``--history`` readings for each of ``--packages`` packages (growth on
some of them, so the summary lists hundreds of leaking packages: a large payload), or ``--source report``: a
saved-report ``ReportSource`` of the same size. The server runs in this process on 127.0.0.1:0 (as during a
session); the load generator is threads with ``http.client`` keep-alive connections, so client and server share
the GIL: the figures are a lower bound for a separate client such as ``wrk``.
Target: one summary <= 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_memtrack.server.sources import MemorySource, ReportSource
from pytest_memtrack.server.transport import start_server

SUMMARY = "/api/packages/memory/summary"


def loader_source(packages: int, history: int) -> MemorySource:
    from pytest_memtrack.tracking.loader import LazyLoader

    loader = LazyLoader()
    for step in range(history):
        loader.record_readings({f"pkg{i}.sub": 1e6 + i * 10 + step * (i % 7) * 1000.0 for i in range(packages)},
                               timestamp=1_000.0 + step)
    return loader


def report_source(packages: int, history: int) -> MemorySource:
    loader = loader_source(packages, min(history, 10))
    report = {
        "summary": loader.get_memory_usage_summary(),
        "suggestions": loader.get_optimization_suggestions_report(),
        "leaks": loader.get_memory_leaks_report(0.1),
        "packages": {name: loader.get_package_memory_info(name) for name in loader.package_names()},
    }
    return ReportSource(report)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def latency(host: str, port: int, target: str, count: int) -> tuple[list[float], int]:
    """Sequential requests on one keep-alive connection: per-request milliseconds and the body size."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    samples, size = [], 0
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status == 200, body[:200]
            size = len(body)
    finally:
        conn.close()
    return samples, size


def throughput(host: str, port: int, target: str, clients: int, seconds: float) -> tuple[float, int]:
    """Requests per second over ``seconds`` from ``clients`` threads, each with its own keep-alive connection."""
    done = [0] * clients
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while time.perf_counter() < stop:
                conn.request("GET", target)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    done[index] += 1
                else:
                    errors[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started), sum(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--source", choices=("loader", "report"), default="loader")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    make = loader_source if args.source == "loader" else report_source
    source = make(args.packages, args.history)
    setup = time.perf_counter() - began
    results: dict[str, Any] = {"source": args.source, "packages": args.packages, "history": args.history,
                               "setup_s": round(setup, 1)}
    with start_server(source, "127.0.0.1", 0) as server:
        latency(server.host, server.port, SUMMARY, 20)  # warm-up
        for label, target in (("summary", SUMMARY), ("package", "/api/packages/memory/pkg500.sub"),
                              ("leaks", "/api/packages/memory/leaks?threshold=0.5"), ("metrics", "/metrics")):
            samples, size = latency(server.host, server.port, target, args.requests)
            results[label] = {"median_ms": round(statistics.median(samples), 2),
                              "p95_ms": round(percentile(samples, 0.95), 2),
                              "max_ms": round(max(samples), 2), "bytes": size}
        rate, errors = throughput(server.host, server.port, SUMMARY, args.clients, args.seconds)
        results["summary_throughput"] = {"clients": args.clients, "requests_per_s": round(rate), "errors": errors}
    print(json.dumps(results, indent=2))
    target_met = results["summary"]["median_ms"] <= 20 and results["summary"]["p95_ms"] <= 20
    print(f"summary of {args.packages} packages x {args.history} readings: median "
          f"{results['summary']['median_ms']} ms, p95 {results['summary']['p95_ms']} ms "
          f"({'meets' if target_met else 'MISSES'} the 20 ms target); {results['summary_throughput']['requests_per_s']}"
          f" requests/s with {args.clients} keep-alive clients")
    return 0 if target_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
