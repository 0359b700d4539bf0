"""What the sweeper re-publishes, and how often."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from domain.clock import utcnow
from domain.db import transaction
from domain.events import Event, EventStatus
from domain.outbox import due_for_publish, release_held
from tests.domain import factories
from tests.support.environment import Environment


def sweep(env: Environment, at_offset: float) -> list[str]:
    with transaction(env.engine) as session:
        due = due_for_publish(
            session, now=utcnow() + timedelta(seconds=at_offset), grace_seconds=10
        )
    return [event_id for event_id, _ in due]


def set_event(env: Environment, event_id: str, **values: object) -> None:
    with transaction(env.engine) as session:
        session.exec(sa.update(Event).where(Event.id == event_id).values(**values))


def test_a_fresh_pending_event_is_left_to_its_message(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "x")
    assert event_id not in sweep(env, 5)
    assert event_id in sweep(env, 11)


def test_repeated_sweeps_back_off_exponentially(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "x")
    assert event_id in sweep(env, 11)  # first re-publish; next in 10 s
    assert event_id not in sweep(env, 15)
    assert event_id in sweep(env, 22)  # second; next in 20 s
    assert event_id not in sweep(env, 35)
    assert event_id in sweep(env, 43)


def test_due_retries_and_expired_leases_are_published(env: Environment) -> None:
    source = factories.source(env)
    retry_due, retry_later, abandoned, running, done = (
        factories.event(env, source, "x") for _ in range(5)
    )
    now, hour = utcnow(), timedelta(hours=1)
    set_event(env, retry_due, status=EventStatus.RETRYING, next_attempt_at=now)
    set_event(
        env, retry_later, status=EventStatus.RETRYING, next_attempt_at=now + timedelta(hours=1)
    )
    set_event(env, abandoned, status=EventStatus.PROCESSING, lease_until=now - timedelta(seconds=1))
    set_event(env, running, status=EventStatus.PROCESSING, lease_until=now + hour)
    set_event(env, done, status=EventStatus.PROCESSED)
    published = sweep(env, 1)
    assert retry_due in published
    assert abandoned in published
    assert not {retry_later, running, done} & set(published)


def test_held_events_are_released_in_order(env: Environment) -> None:
    source = factories.source(env)
    ids = [factories.event(env, source, "x") for _ in range(3)]
    for event_id in ids:
        set_event(env, event_id, status=EventStatus.HELD)
    with transaction(env.engine) as session:
        released = release_held(session, source, utcnow(), 10)
    assert released == [(event_id, "x") for event_id in sorted(ids)]
    with transaction(env.engine) as session:
        statuses = session.exec(sa.select(Event.status).where(Event.id.in_(ids))).scalars().all()
    assert set(statuses) == {EventStatus.PENDING}
