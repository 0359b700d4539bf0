"""Queue stored events for processing (follow-ups, sweeper, replays, released holds)."""

from __future__ import annotations

from collections.abc import Iterable

from domain.routing import events_in, messages
from workers.celery_app import app


def enqueue(events: Iterable[tuple[str, str]]) -> int:
    """``domain.routing.Publish`` over the workers' Celery app: ``events`` are (event id,
    event type) pairs; returns how many events were queued."""
    sent = 0
    with app.producer_or_acquire() as producer:
        for task, args in messages(events):
            app.send_task(task, args=args, producer=producer)
            sent += events_in(args)
    return sent
