"""Chaos with nothing lost: a load of a few thousand events runs while a fault is injected,
then the invariants are checked. Every test runs its own Postgres and Redis (throwaway
servers on free ports), never the machine's shared ones, and its own SMTP server and fake
Chargebee.

Invariants: every accepted event is processed, its effect exactly once; nothing is left
pending, processing or retrying; every attempt is recorded; every email arrives once;
every bill is charged once."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from domain.db import transaction
from domain.events import Attempt, Event, EventStatus
from domain.notifications.emails import SEND_EMAIL
from domain.users import create_user
from tests.conftest import outside_env
from tests.support import handlers
from tests.support.billing import Api, prepare_customer, summary
from tests.support.environment import Environment, make_env
from tests.support.fake_chargebee import FakeChargebee
from tests.support.processes import Stack, wait_for
from tests.support.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.smtp import SmtpServer
from tests.support.webhooks import body_of, new_source, signed_headers

pytestmark = pytest.mark.chaos

LOAD = 2000
EMAILS = 200
BILLS = 30
STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


@pytest.fixture
def servers() -> Iterator[tuple[ThrowawayPostgres, ThrowawayRedis]]:
    postgres, redis = ThrowawayPostgres(), ThrowawayRedis()
    postgres.start()
    redis.start()
    yield postgres, redis
    redis.remove()
    postgres.remove()


@pytest.fixture
def chaos(servers: tuple[ThrowawayPostgres, ThrowawayRedis], tmp_path: Path) -> Iterator[Stack]:
    postgres, redis = servers
    env = make_env(
        tmp_path / "env",
        database_url=postgres.url,
        broker_url=redis.url,
        task_time_limit_seconds=5,
        outbox_grace_seconds=3,
        sweep_interval_seconds=1,
        visibility_timeout_seconds=20,
        retry_max_attempts=30,  # about half a minute of 1 s retries: outages outlast 4
    )
    stack = Stack(env, tmp_path)
    yield stack
    stack.close()
    env.engine.dispose()


@pytest.fixture
def outside() -> Iterator[tuple[FakeChargebee, SmtpServer]]:
    fake = FakeChargebee(hang_seconds=4).start()
    smtp = SmtpServer().start()
    yield fake, smtp
    smtp.stop()
    fake.stop()


def start_reaching_outside(stack: Stack, fake: FakeChargebee, smtp: SmtpServer) -> None:
    """Receiver, beat, and a worker that talks to this test's SMTP server and Chargebee."""
    with stack.side_by_side():
        stack.start_receiver()
        stack.start_beat()
        stack.start_worker(**outside_env(fake, smtp))


async def _post_all(
    url: str, source_id: str, secret: str, count: int, kind: str, **data: str
) -> list[str]:
    accepted: list[str] = []
    limit = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, n: int) -> None:
        body = body_of(kind, n=n, sleep=0.005, **data)
        for _ in range(100):  # a sender retries a 503 (and a refused connection) later
            async with limit:
                try:
                    response = await client.post(
                        f"{url}/webhooks/{source_id}",
                        content=body,
                        headers=signed_headers(secret, body, f"{kind}_{n}"),
                    )
                except httpx.TransportError:
                    response = None
            if response is not None and response.status_code in (200, 202):
                accepted.append(response.json()["event_id"])
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"event {n} was never accepted")

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))
    return accepted


def send_load(stack: Stack, count: int = LOAD, kind: str = "test.effect") -> list[str]:
    source_id, secret = new_source(stack.env)
    return asyncio.run(_post_all(stack.receiver_url, source_id, secret, count, kind))


def assert_invariants(env: Environment, accepted: list[str], timeout: float = 240) -> None:
    ids = sorted(set(accepted))
    assert len(ids) == len(accepted)  # one event id per provider event

    def open_events() -> int:
        with Session(env.engine) as session:
            return session.exec(
                select(sa.func.count())
                .select_from(Event)
                .where(
                    Event.id.in_(ids),  # type: ignore[attr-defined]
                    Event.status != EventStatus.PROCESSED,
                )
            ).one()

    wait_for(lambda: open_events() == 0, timeout=timeout, interval=1, what="every event processed")
    with Session(env.engine) as session:
        effects = dict(
            session.execute(
                sa.select(handlers.effects.c.event_id, sa.func.count())
                .where(handlers.effects.c.event_id.in_(ids))
                .group_by(handlers.effects.c.event_id)
            ).all()
        )
        attempts = session.exec(
            select(Attempt).where(Attempt.event_id.in_(ids)).order_by(Attempt.id)  # type: ignore[attr-defined]
        ).all()
        events = {e.id: e for e in session.exec(select(Event).where(Event.id.in_(ids))).all()}  # type: ignore[attr-defined]
    assert set(effects) == set(ids)
    assert set(effects.values()) == {2}  # two handlers, each effect exactly once
    by_event: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_event.setdefault(attempt.event_id, []).append(attempt)
    for event_id, event in events.items():
        history = by_event[event_id]
        assert len(history) == event.attempts  # every attempt recorded
        assert history[-1].outcome == "succeeded"
        assert all(a.outcome in ("lost", "retry") for a in history[:-1])


def processing(env: Environment) -> int:
    with Session(env.engine) as session:
        return session.exec(
            select(sa.func.count()).select_from(Event).where(Event.status == EventStatus.PROCESSING)
        ).one()


def test_workers_sigkilled_mid_handler_lose_nothing(chaos: Stack) -> None:
    with chaos.side_by_side():
        chaos.start_receiver()
        chaos.start_beat()
        worker = chaos.start_worker()
    accepted = send_load(chaos)
    for _ in range(3):  # kill the worker whenever it is in the middle of events
        wait_for(lambda: processing(chaos.env) > 0, timeout=60, interval=0.05, what="work in hand")
        worker.kill(signal.SIGKILL)
        worker = chaos.start_worker(wait=False)
        time.sleep(random.uniform(0.5, 1.5))
    assert_invariants(chaos.env, accepted)
    with Session(chaos.env.engine) as session:
        lost = session.exec(
            select(sa.func.count()).select_from(Attempt).where(Attempt.outcome == "lost")
        ).one()
    assert lost >= 1  # the kills really happened mid-event


def test_a_redis_restart_that_loses_the_queue_loses_no_work(
    chaos: Stack, servers: tuple[ThrowawayPostgres, ThrowawayRedis]
) -> None:
    _, redis = servers
    chaos.start_receiver()
    accepted = send_load(chaos)  # queued in Redis, no worker yet
    redis.stop()
    redis.start()  # empty: every queued message is gone
    with chaos.side_by_side():
        chaos.start_beat()
        chaos.start_worker()
    assert_invariants(chaos.env, accepted)


def test_a_postgres_restart_during_intake_answers_503_then_202_and_half_writes_nothing(
    chaos: Stack, servers: tuple[ThrowawayPostgres, ThrowawayRedis]
) -> None:
    postgres, _ = servers
    with chaos.side_by_side():
        chaos.start_receiver()
        chaos.start_worker()
        chaos.start_beat()
    statuses: list[int] = []

    async def restart_during_load() -> list[str]:
        source_id, secret = new_source(chaos.env)

        async def outage() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(postgres.stop)
            async with httpx.AsyncClient(timeout=10) as client:
                body = body_of("test.effect")
                for _ in range(5):
                    answer = await client.post(
                        f"{chaos.receiver_url}/webhooks/{source_id}",
                        content=body,
                        headers=signed_headers(secret, body, f"probe_{time.monotonic()}"),
                    )
                    statuses.append(answer.status_code)
            await asyncio.sleep(2)
            await asyncio.to_thread(postgres.start)

        restart = asyncio.create_task(outage())
        accepted = await _post_all(chaos.receiver_url, source_id, secret, LOAD, "test.effect")
        await restart
        return accepted

    accepted = asyncio.run(restart_during_load())
    assert 503 in statuses
    assert_invariants(chaos.env, accepted)
    with Session(chaos.env.engine) as session:
        stored = session.exec(
            select(sa.func.count()).select_from(Event).where(Event.type == "test.effect")
        ).one()
    # the probes answered 503 were not stored; every event stored was acknowledged
    assert stored == len(accepted) + statuses.count(202)


def statuses(env: Environment, *types: str) -> dict[str, int]:
    with Session(env.engine) as session:
        rows = session.exec(
            select(Event.status, sa.func.count())
            .where(Event.type.in_(types))  # type: ignore[attr-defined]
            .group_by(Event.status)
        ).all()
    return {str(status): count for status, count in rows}


def failed_email_attempts(env: Environment) -> int:
    with Session(env.engine) as session:
        return session.exec(
            select(sa.func.count())
            .select_from(Attempt)
            .join(Event, Event.id == Attempt.event_id)  # type: ignore[arg-type]
            .where(Event.type == SEND_EMAIL, Attempt.outcome == "retry")
        ).one()


def test_an_smtp_server_down_under_load_gets_every_email_once_when_back(
    chaos: Stack, outside: tuple[FakeChargebee, SmtpServer]
) -> None:
    fake, smtp = outside
    start_reaching_outside(chaos, fake, smtp)
    with transaction(chaos.env.engine) as session:
        user = create_user(session, "org_default", "Ops", "ops@example.com")
    source_id, secret = new_source(chaos.env)
    smtp.stop()

    async def load() -> tuple[list[str], list[str]]:
        url = chaos.receiver_url
        return await asyncio.gather(
            _post_all(url, source_id, secret, LOAD, "test.effect"),
            _post_all(url, source_id, secret, EMAILS, "test.email", user_id=user.id, to=user.email),
        )

    effect_ids, _ = asyncio.run(load())
    # the server stays down until many sends have failed and been put off
    wait_for(lambda: failed_email_attempts(chaos.env) >= 50, timeout=120, what="sends to fail")
    assert smtp.messages == []
    smtp.start()

    assert_invariants(chaos.env, effect_ids)
    wait_for(
        lambda: statuses(chaos.env, "test.email", SEND_EMAIL) == {"processed": 2 * EMAILS},
        timeout=120,
        interval=1,
        what="every email sent",
    )
    subjects = sorted(message["Subject"] for message in smtp.to(user.email))
    assert subjects == sorted(f"notice {n}" for n in range(EMAILS))  # each exactly once


def test_chargebee_failing_under_load_charges_every_bill_exactly_once(
    chaos: Stack, outside: tuple[FakeChargebee, SmtpServer]
) -> None:
    fake, smtp = outside
    fake.price("cb-default")
    start_reaching_outside(chaos, fake, smtp)
    api = Api(chaos.env, chaos.receiver_url)
    api.config()
    customers = [prepare_customer(fake, api) for _ in range(BILLS)]
    fake.fail_next(6, "500")
    fake.fail_next(4, "429", retry_after=1)
    fake.fail_next(3, "hang")
    fake.fail_next(3, "apply_then_hang")
    effect_ids: list[str] = []
    load = threading.Thread(target=lambda: effect_ids.extend(send_load(chaos)))
    load.start()
    bills = [api.bill(account["id"], [STANDING]) for account, _ in customers]
    load.join()

    runs = [api.wait_runs(bill["id"], 1, timeout=240)[0] for bill in bills]
    assert [run["status"] for run in runs] == ["COMPLETE"] * BILLS
    assert sum(run["attempts"] for run in runs) == BILLS + 16  # each fault cost one attempt
    for _, invoice in customers:
        assert summary(fake.lines(invoice)) == [("cb-default", 1, 4900, 4900)]
        assert len(fake.applied("add_charge_item", invoice)) == 1
    assert_invariants(chaos.env, effect_ids)
    api.http.close()
