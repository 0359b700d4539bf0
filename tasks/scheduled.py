"""``routing.SCHEDULED_EVENTS_TASK``: beat's check for scheduled events that are due.

Every ``METERBRIDGE_SCHEDULE_CHECK_SECONDS`` it appends the ``schedule.*`` event of each
notification rule whose time has come (``domain.notifications.scheduled.emit_due``), one
transaction per batch of rules, and publishes the events once that has committed. A
publish that is lost is not an error: the sweeper finds the events later.
"""

from __future__ import annotations

import time

import structlog

from domain import routing
from domain.clock import utcnow
from domain.db import transaction
from domain.notifications.scheduled import emit_due
from tasks.publish import enqueue
from workers.celery_app import app
from workers.runtime import runtime

log = structlog.get_logger(__name__)

#: Rules taken in one transaction.
BATCH = 100
TIME_BUDGET_SECONDS = 20.0


@app.task(name=routing.SCHEDULED_EVENTS_TASK)
def scheduled_events() -> int:
    """Append the scheduled events that are due and publish them; returns how many."""
    rt = runtime()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    total = 0
    while time.monotonic() < deadline:
        with transaction(rt.engine) as session:
            emitted = emit_due(session, now=utcnow(), limit=BATCH)
        if emitted:
            enqueue(emitted)
            total += len(emitted)
        if len(emitted) < BATCH:
            break
    if total:
        log.info("scheduled.emitted", events=total)
    return total
