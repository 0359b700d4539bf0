from __future__ import annotations

import time

import structlog

from domain import routing
from domain.clock import utcnow
from domain.db import transaction
from domain.outbox import due_for_publish
from tasks.publish import enqueue
from workers.celery_app import app
from workers.runtime import runtime

log = structlog.get_logger(__name__)

BATCH = 1000
TIME_BUDGET_SECONDS = 20.0


@app.task(name=routing.SWEEP_TASK)
def sweep() -> int:
    """Re-publish events that should be on the queue but may not be (see domain.outbox)."""
    rt = runtime()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    total = 0
    while time.monotonic() < deadline:
        with transaction(rt.engine) as session:
            ids = due_for_publish(
                session, now=utcnow(), grace_seconds=rt.settings.outbox_grace_seconds, limit=BATCH
            )
        total += enqueue(ids)
        if len(ids) < BATCH:
            break
    if total:
        log.info("sweep.republished", events=total)
    return total
