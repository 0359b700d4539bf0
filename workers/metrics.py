"""Prometheus metrics of the workers: events processed, retried and dead, and how long
each handler runs.

A worker is several pool processes. Each writes its samples to files in a directory the
worker's main process owns (prometheus_client's multiprocess mode, which ``meterbridge
worker`` sets up before anything imports prometheus_client), and the main process serves
their sum on ``METERBRIDGE_WORKER_METRICS_PORT``. Counters of a pool process that died
stay counted.

The state of the work as a whole (queue depth, open events, the oldest unprocessed
event's age) is one set of gauges for the whole system, so the receiver's ``/metrics``
serves it once instead of every worker reading the database on every scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client import start_http_server as _start_http_server

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5, 10, 30)

events_processed = Counter(
    "meterbridge_events_processed",
    "Events finished by a worker: processed, or ignored (no handler for their type).",
    ["status"],
)
events_retried = Counter(
    "meterbridge_events_retried", "Failed attempts that were scheduled for another try."
)
events_dead = Counter(
    "meterbridge_events_dead", "Events that failed for good and became dead letters."
)
handler_duration = Histogram(
    "meterbridge_handler_duration_seconds",
    "Time one handler took for one event, by handler and whether it succeeded.",
    ["handler", "outcome"],
    buckets=HANDLER_BUCKETS,
)


def observe_handler(handler: str, seconds: float, succeeded: bool) -> None:
    handler_duration.labels(handler, "success" if succeeded else "error").observe(seconds)


def serve(port: int, address: str) -> None:
    """Serve every pool process's samples, summed, on ``http://address:port/metrics``."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        _start_http_server(port, addr=address, registry=registry)
    else:  # a solo or threads pool run without `meterbridge worker`: one process
        _start_http_server(port, addr=address)
