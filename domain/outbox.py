"""The event row is its own outbox. The sweeper asks for events that should be on the
queue but may not be: never published (broker down at intake), a due retry that waited
in the database, or a claim whose worker died.

An event may simply be waiting behind a long queue, so each re-publish doubles the time
before the next one (grace, 2 grace, 4 grace, ... capped): a backlog is not flooded with
copies, and a lost message is still found within one grace period.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select, update

from domain.events import Event, EventStatus

MAX_SWEEP_BACKOFF_DOUBLINGS = 6


def due_for_publish(
    session: Session, *, now: datetime, grace_seconds: float, limit: int = 1000
) -> list[tuple[str, str]]:
    """(id, type) of events to publish again, oldest first, each pushed back to its next
    sweep time."""
    sweep_due = sa.or_(col(Event.sweep_after).is_(None), col(Event.sweep_after) <= now)
    needs_publish = sa.or_(
        sa.and_(
            col(Event.status) == EventStatus.PENDING,
            sa.or_(
                col(Event.sweep_after) <= now,
                sa.and_(
                    col(Event.sweep_after).is_(None),
                    col(Event.received_at) < now - timedelta(seconds=grace_seconds),
                ),
            ),
        ),
        sa.and_(
            col(Event.status) == EventStatus.RETRYING, col(Event.next_attempt_at) <= now, sweep_due
        ),
        sa.and_(
            col(Event.status) == EventStatus.PROCESSING, col(Event.lease_until) < now, sweep_due
        ),
    )
    statement = (
        select(Event.id, Event.type, Event.sweeps)
        .where(needs_publish)
        .order_by(col(Event.id))
        .limit(limit)
    )
    rows = list(session.exec(statement))
    by_sweeps: dict[int, list[str]] = defaultdict(list)
    for event_id, _, sweeps in rows:
        by_sweeps[sweeps].append(event_id)
    for sweeps, ids in by_sweeps.items():
        wait = grace_seconds * 2 ** min(sweeps, MAX_SWEEP_BACKOFF_DOUBLINGS)
        session.exec(
            update(Event)
            .where(col(Event.id).in_(ids))
            .values(sweeps=sweeps + 1, sweep_after=now + timedelta(seconds=wait))
        )
    return [(event_id, event_type) for event_id, event_type, _ in rows]


def release_held(
    session: Session, source_id: str, now: datetime, grace_seconds: float
) -> list[tuple[str, str]]:
    """Held events (id, type) of a re-enabled source become pending again, in the order
    received."""
    statement = (
        select(Event.id, Event.type)
        .where(col(Event.source_id) == source_id, col(Event.status) == EventStatus.HELD)
        .order_by(col(Event.id))
    )
    held = [(event_id, event_type) for event_id, event_type in session.exec(statement)]
    if held:
        session.exec(
            update(Event)
            .where(col(Event.source_id) == source_id, col(Event.status) == EventStatus.HELD)
            .values(
                status=EventStatus.PENDING,
                sweeps=0,
                sweep_after=now + timedelta(seconds=grace_seconds),
            )
        )
    return held
