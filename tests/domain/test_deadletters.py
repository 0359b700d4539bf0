from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session

from domain.clock import utcnow
from domain.db import transaction
from domain.deadletters import (
    DeadLetterFilter,
    count_dead,
    list_dead,
    replay,
    replay_dead_letters,
    replay_matching,
)
from domain.events import Event, EventStatus
from domain.organisations import DEFAULT_ORG_ID
from tests.domain import factories
from tests.support.environment import Environment


def kill(env: Environment, event_id: str, error: str, minutes_ago: int = 0) -> None:
    with transaction(env.engine) as session:
        session.exec(
            sa.update(Event)
            .where(Event.id == event_id)
            .values(
                status=EventStatus.DEAD,
                dead_reason="permanent",
                last_error=error,
                attempts=3,
                dead_at=utcnow() - timedelta(minutes=minutes_ago),
            )
        )


def test_filters_select_dead_letters(env: Environment) -> None:
    source, other = factories.source(env), factories.source(env)
    a = factories.event(env, source, "invoice.paid")
    b = factories.event(env, source, "invoice.voided")
    c = factories.event(env, other, "invoice.paid")
    alive = factories.event(env, source, "invoice.paid")
    kill(env, a, "PermanentError: no mapping for plan_50%_off", minutes_ago=60)
    kill(env, b, "TransientError: timeout")
    kill(env, c, "PermanentError: no mapping for plan_x")

    # list_dead answers in id order; ids made in the same millisecond are not in creation order
    def ids(**kwargs: object) -> list[str]:
        with transaction(env.engine) as session:
            return [e.id for e in list_dead(session, DeadLetterFilter(DEFAULT_ORG_ID, **kwargs))]

    assert alive not in ids()
    assert ids(source_id=source) == sorted([a, b])
    assert ids(type="invoice.paid", source_id=source) == [a]
    assert ids(error_contains="NO MAPPING") == sorted([a, c])
    assert ids(error_contains="50%_") == [a]  # LIKE wildcards are matched literally
    assert ids(error_contains="0%x") == []
    assert ids(since=utcnow() - timedelta(minutes=5)) == sorted([b, c])
    assert ids(until=utcnow() - timedelta(minutes=5)) == [a]
    assert ids(event_ids=(b,)) == [b]
    assert ids(source_id=source, error_contains="timeout") == [b]
    with transaction(env.engine) as session:
        assert count_dead(session, DeadLetterFilter(DEFAULT_ORG_ID, source_id=source)) == 2


def test_bulk_replay_moves_every_match_chunk_by_chunk(env: Environment) -> None:
    source = factories.source(env)
    ids = sorted(factories.event(env, source, "x") for _ in range(5))  # id order: time, then random
    for event_id in ids:
        kill(env, event_id, "boom")
    filt = DeadLetterFilter(DEFAULT_ORG_ID, source_id=source)
    chunks = list(replay_matching(env.engine, filt, now=utcnow(), grace_seconds=10, chunk=2))
    assert chunks == [[(i, "x") for i in ids[n : n + 2]] for n in (0, 2, 4)]
    with transaction(env.engine) as session:
        assert count_dead(session, filt) == 0


def test_other_organisations_dead_letters_are_invisible(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "x")
    kill(env, event_id, "boom")
    with transaction(env.engine) as session:
        assert list_dead(session, DeadLetterFilter("org_other")) == []
        assert replay(session, "org_other", [event_id], utcnow(), 10) == []


def test_replay_moves_once_and_keeps_the_history(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "x")
    kill(env, event_id, "boom")
    with transaction(env.engine) as session:
        assert replay(session, DEFAULT_ORG_ID, [event_id], utcnow(), 10) == [event_id]
    with transaction(env.engine) as session:
        assert replay(session, DEFAULT_ORG_ID, [event_id], utcnow(), 10) == []
        event = session.get(Event, event_id)
        assert event is not None
        assert (event.status, event.attempts, event.replays) == (EventStatus.PENDING, 0, 1)
        assert event.last_error == "boom"


class Bar:
    """A ``ReplayProgress`` that remembers what it was told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int]] = []

    def start(self, matched: int) -> None:
        self.told.append(("start", matched))

    def advance(self, replayed: int) -> None:
        self.told.append(("advance", replayed))


def test_replay_service_replays_the_matches_and_publishes_them_after_commit(
    env: Environment,
) -> None:
    # given three dead letters of a source, one of another source, and a live event
    source, other = factories.source(env), factories.source(env)
    types = {factories.event(env, source, f"t{n}"): f"t{n}" for n in range(3)}
    ids = sorted(types)  # id order: time, then random
    elsewhere = factories.event(env, other, "t")
    alive = factories.event(env, source, "t")
    for event_id in [*ids, elsewhere]:
        kill(env, event_id, "boom")
    filt = DeadLetterFilter(DEFAULT_ORG_ID, source_id=source)
    published, bar = factories.Published(env), Bar()

    # when a dry run asks what would be replayed
    dry = replay_dead_letters(
        env.engine, filt, published, now=utcnow(), grace_seconds=10, dry_run=True, progress=bar
    )

    # then it says, and changes and publishes nothing
    assert (dry.dry_run, dry.matched, dry.replayed) == (True, 3, [])
    assert [e.id for e in dry.would_replay] == ids
    assert published.calls == []
    assert bar.told == []
    with transaction(env.engine) as session:
        assert count_dead(session, filt) == 3

    # when they are replayed
    done = replay_dead_letters(
        env.engine, filt, published, now=utcnow(), grace_seconds=10, progress=bar
    )

    # then exactly the matches are pending again, published once each after their commit
    assert (done.dry_run, done.matched, done.replayed, done.would_replay) == (False, 3, ids, [])
    assert published.pairs == [(event_id, types[event_id]) for event_id in ids]
    assert published.seen == dict.fromkeys(ids, EventStatus.PENDING)
    assert bar.told == [("start", 3), ("advance", 3)]
    with Session(env.engine) as session:
        status = {e: session.get_one(Event, e).status for e in [*ids, elsewhere, alive]}
    assert status == {
        **dict.fromkeys(ids, EventStatus.PENDING),
        elsewhere: EventStatus.DEAD,
        alive: EventStatus.PENDING,
    }

    # and a second replay finds nothing dead and publishes nothing
    again = replay_dead_letters(env.engine, filt, published, now=utcnow(), grace_seconds=10)
    assert (again.matched, again.replayed) == (0, [])
    assert len(published.calls) == 1
