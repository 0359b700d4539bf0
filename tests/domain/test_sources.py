"""Enabling a source releases its held events (the service the API and the CLI call)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from domain.clock import utcnow
from domain.db import transaction
from domain.errors import NotFound
from domain.events import Event, EventStatus
from domain.organisations import DEFAULT_ORG_ID
from domain.sources import Source, disable_source, enable_and_release, get_source
from tests.domain import factories
from tests.support.environment import Environment


def disabled_source(env: Environment, errors: int = 3) -> str:
    source_id = factories.source(env)
    with transaction(env.engine) as session:
        source = session.get_one(Source, source_id)
        source.consecutive_errors = errors
        disable_source(session, source, "too many errors")
    return source_id


def statuses(env: Environment, ids: list[str]) -> dict[str, str]:
    with Session(env.engine) as session:
        return {event_id: session.get_one(Event, event_id).status for event_id in ids}


def test_enable_and_release_publishes_the_held_events_in_order_after_commit(
    env: Environment,
) -> None:
    # given a disabled source holding three events, and another disabled source holding one
    source_id, other_id = disabled_source(env), disabled_source(env)
    types = {factories.event(env, source_id, f"t{n}", held=True): f"t{n}" for n in range(3)}
    held = sorted(types)  # the order received: id order
    kept = factories.event(env, other_id, "t", held=True)
    published = factories.Published(env)

    # when the source is enabled
    enabled = enable_and_release(
        env.engine,
        lambda session: get_source(session, DEFAULT_ORG_ID, source_id),
        published,
        now=utcnow(),
        grace_seconds=10,
    )

    # then it is enabled with its error count started again
    assert enabled.source.id == source_id
    with Session(env.engine) as session:
        source = session.get_one(Source, source_id)
        assert (source.enabled, source.consecutive_errors, source.disabled_reason) == (
            True,
            0,
            None,
        )
    # and its held events, only its own, were published once, in order, after the commit
    assert enabled.released == [(event_id, types[event_id]) for event_id in held]
    assert published.calls == [enabled.released]
    assert published.seen == dict.fromkeys(held, EventStatus.PENDING)
    assert statuses(env, [*held, kept]) == {
        **dict.fromkeys(held, EventStatus.PENDING),
        kept: EventStatus.HELD,
    }


def test_a_source_not_found_changes_and_publishes_nothing(env: Environment) -> None:
    # given a disabled source with a held event
    source_id = disabled_source(env)
    event_id = factories.event(env, source_id, "t", held=True)
    published = factories.Published(env)

    # when another organisation asks to enable it
    with pytest.raises(NotFound):
        enable_and_release(
            env.engine,
            lambda session: get_source(session, "org_other", source_id),
            published,
            now=utcnow(),
            grace_seconds=10,
        )

    # then nothing changed
    assert published.calls == []
    assert statuses(env, [event_id]) == {event_id: EventStatus.HELD}
    with Session(env.engine) as session:
        assert session.get_one(Source, source_id).enabled is False


def test_enabling_a_source_with_nothing_held_publishes_nothing(env: Environment) -> None:
    source_id = disabled_source(env)
    published = factories.Published(env)
    enabled = enable_and_release(
        env.engine,
        lambda session: get_source(session, DEFAULT_ORG_ID, source_id),
        published,
        now=utcnow(),
        grace_seconds=10,
    )
    assert (enabled.source.enabled, enabled.released, published.calls) == (True, [], [])
