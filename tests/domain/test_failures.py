"""The failure counter on the test database, including many writers at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import Session, select

from domain.clock import utcnow
from domain.db import transaction
from domain.events import Event
from domain.failures import count_failure, count_success
from domain.sources import Source
from tests.domain import factories
from tests.support.environment import Environment


def fail(env: Environment, source_id: str) -> bool:
    with transaction(env.engine) as session:
        return count_failure(session, Source, source_id, now=utcnow())


def state(env: Environment, source_id: str) -> Source:
    with Session(env.engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        return source


def disabled_events(env: Environment, source_id: str) -> list[Event]:
    with Session(env.engine) as session:
        events = session.exec(select(Event).where(Event.type == "source.disabled")).all()
        return [e for e in events if source_id in e.payload]


def test_the_tenth_successive_failure_disables_once(env: Environment) -> None:
    source_id = factories.source(env)
    assert [fail(env, source_id) for _ in range(9)] == [False] * 9
    assert state(env, source_id).enabled
    assert fail(env, source_id) is True
    assert fail(env, source_id) is False
    source = state(env, source_id)
    assert (source.enabled, source.consecutive_errors) == (False, 11)
    assert source.disabled_reason == "disabled automatically after 10 successive errors"
    assert len(disabled_events(env, source_id)) == 1


def test_a_success_ends_the_streak(env: Environment) -> None:
    source_id = factories.source(env)
    for _ in range(9):
        fail(env, source_id)
    with transaction(env.engine) as session:
        count_success(session, Source, source_id)
    assert state(env, source_id).consecutive_errors == 0
    assert [fail(env, source_id) for _ in range(9)] == [False] * 9
    assert state(env, source_id).enabled


def test_twenty_writers_at_once_count_exactly_and_one_disables(env: Environment) -> None:
    source_id = factories.source(env)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: fail(env, source_id), range(20)))
    assert results.count(True) == 1
    assert state(env, source_id).consecutive_errors == 20
    assert len(disabled_events(env, source_id)) == 1
