"""Queue stored events for processing (follow-ups, sweeper, replays, released holds)."""

from __future__ import annotations

from collections.abc import Iterable

from domain.eventlog import messages
from workers.celery_app import app


def enqueue(events: Iterable[tuple[str, str]]) -> int:
    """``events``: (event id, event type) pairs; returns how many events were queued."""
    sent = 0
    with app.producer_or_acquire() as producer:
        for task, args in messages(events):
            app.send_task(task, args=args, producer=producer)
            sent += len(args[0]) if isinstance(args[0], list) else 1
    return sent
