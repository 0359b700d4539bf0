"""Prometheus metrics at ``/metrics``.

Intake counts and times every webhook in-process. The state of the work is read when
scraped, from the event log and the broker: events still open by status, the age of the
oldest event not yet processed, and the broker queue's depth. (Each worker serves its own
counts and handler durations: ``workers.metrics``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import col

from domain.clock import utcnow
from domain.events import OPEN_STATUSES, Event, EventStatus

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IntakeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "meterbridge_webhooks_accepted",
            "Webhooks stored and acknowledged (202).",
            ["provider"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "meterbridge_webhooks_duplicate",
            "Repeats of a stored provider event (200).",
            ["provider"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "meterbridge_webhooks_rejected",
            "Webhooks refused, by reason (the error code).",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meterbridge_intake_duration_seconds",
            "Time from request to answer at intake.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, engine: sa.Engine, queue_depth: Any) -> None:
        self.registry.register(WorkCollector(engine, queue_depth))


class WorkCollector(Collector):
    def __init__(self, engine: sa.Engine, queue_depth: Any) -> None:
        self.engine = engine
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_events = GaugeMetricFamily(
            "meterbridge_events_open", "Events not finished yet, by status.", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "meterbridge_oldest_unprocessed_event_age_seconds",
            "Age of the oldest event that is pending, processing or retrying.",
        )
        try:
            with self.engine.connect() as connection:
                counts: dict[str, int] = dict(
                    connection.execute(
                        sa.select(col(Event.status), sa.func.count())
                        .where(col(Event.status).in_(OPEN_STATUSES))
                        .group_by(col(Event.status))
                    ).all()
                )
                first = connection.execute(
                    sa.select(sa.func.min(Event.id)).where(col(Event.status).in_(OPEN_STATUSES))
                ).scalar_one()
                received = (
                    connection.execute(
                        sa.select(col(Event.received_at)).where(col(Event.id) == first)
                    ).scalar_one_or_none()
                    if first
                    else None
                )
        except sa.exc.SQLAlchemyError:
            return
        for status in (EventStatus.PENDING, EventStatus.PROCESSING, EventStatus.RETRYING):
            open_events.add_metric([str(status)], counts.get(status, 0))
        yield open_events
        oldest.add_metric([], (utcnow() - received).total_seconds() if received else 0.0)
        yield oldest
        depth = self.queue_depth()
        if depth is not None:
            gauge = GaugeMetricFamily(
                "meterbridge_queue_depth", "Messages waiting in the broker queue."
            )
            gauge.add_metric([], depth)
            yield gauge
