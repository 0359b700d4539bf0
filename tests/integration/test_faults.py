"""Faults with real processes: a worker SIGKILLed mid-handler, the broker down at intake,
the database down at intake, and retries too long for a broker countdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from domain.events import Event, EventStatus
from tests.domain import factories
from tests.integration.test_pipeline import attempts_of, effects_of, wait_final
from tests.support.environment import make_env
from tests.support.processes import Proc, Stack, free_port, wait_for
from tests.support.servers import ThrowawayPostgres
from tests.support.webhooks import body_of, new_source, send, signed_headers, status_of


def slow_event_mid_handler(stack: Stack, marker: Path, **worker_env: str) -> tuple[str, Proc]:
    """Receiver, beat and a worker of one process; a ``test.slow`` event whose handler is
    now inside its transaction (its pool process's pid is in ``marker``)."""
    with stack.side_by_side():
        stack.start_receiver()
        worker = stack.start_worker(concurrency=1, **worker_env)
        stack.start_beat()
    source_id, secret = new_source(stack.env)
    with httpx.Client() as client:
        event_id = send(
            client, stack.receiver_url, source_id, secret, "test.slow", marker=str(marker)
        ).json()["event_id"]
    wait_for(marker.exists, timeout=30, what="the handler to start")
    return event_id, worker


def test_a_worker_killed_mid_handler_leaves_the_effect_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    env = stack.env
    # A short hard time limit makes the lease of the killed worker's claim short too.
    limits = {"METERBRIDGE_TASK_TIME_LIMIT_SECONDS": "6"}
    event_id, worker = slow_event_mid_handler(stack, tmp_path / "mid-handler", **limits)

    # when the worker is SIGKILLed while the handler is inside its transaction
    worker.kill(signal.SIGKILL)
    assert status_of(env, event_id) == EventStatus.PROCESSING
    assert effects_of(env, event_id) == []  # the uncommitted effect died with the worker

    # and a worker is started again
    stack.start_worker(concurrency=1, **limits)

    # then the event is processed, its effect exists once, and the lost attempt is recorded
    assert wait_final(env, event_id, timeout=60) == EventStatus.PROCESSED
    assert effects_of(env, event_id) == ["slow"]
    assert [a.outcome for a in attempts_of(env, event_id)] == ["lost", "succeeded"]


def test_a_pool_process_killed_mid_handler_is_retried_at_once_not_after_its_lease(
    stack: Stack, tmp_path: Path
) -> None:
    """The OOM killer's way: one pool process dies, its worker lives on. The worker's
    parent gives the claim back, so the retry does not wait out the 305 s lease."""
    env = stack.env
    marker = tmp_path / "mid-handler"
    event_id, _ = slow_event_mid_handler(stack, marker)  # default time limit: a 305 s lease
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the pool process, not the worker

    assert wait_final(env, event_id, timeout=30) == EventStatus.PROCESSED
    assert effects_of(env, event_id) == ["slow"]
    history = attempts_of(env, event_id)
    assert [a.outcome for a in history] == ["lost", "succeeded"]
    assert history[0].error_message == "worker process died before recording an outcome"


def test_a_worker_killed_after_commit_does_not_repeat_the_effect(stack: Stack) -> None:
    """Killed between the handler's commit and the outcome: the ledger stops a rerun."""
    env = stack.env
    limits = {"METERBRIDGE_TASK_TIME_LIMIT_SECONDS": "6"}
    source_id = factories.source(env)
    event_ids = [factories.event(env, source_id, "test.effect") for _ in range(20)]
    with stack.side_by_side():
        worker = stack.start_worker(concurrency=2, **limits)
        stack.start_beat()
    # kill as soon as some, not all, effects are committed
    wait_for(lambda: sum(bool(effects_of(env, e)) for e in event_ids) >= 3, timeout=60)
    worker.kill(signal.SIGKILL)
    stack.start_worker(concurrency=2, **limits)
    for event_id in event_ids:
        assert wait_final(env, event_id, timeout=60) == EventStatus.PROCESSED
        assert effects_of(env, event_id) == ["effect", "second"]


def test_with_the_broker_down_at_intake_every_event_is_processed_later(stack: Stack) -> None:
    env = stack.env
    # the receiver publishes to a broker that does not answer; worker and beat use the real one
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    stack.start_receiver(METERBRIDGE_BROKER_URL=dead_broker)
    source_id, secret = new_source(env)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.receiver_url, timeout=10) as client:
            sends = []
            for n in range(40):
                body = body_of("test.effect", n=n)
                sends.append(
                    client.post(
                        f"/webhooks/{source_id}", content=body, headers=signed_headers(secret, body)
                    )
                )
            return await asyncio.gather(*sends)

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [202] * 40
    event_ids = [r.json()["event_id"] for r in responses]
    ready = httpx.get(f"{stack.receiver_url}/readyz").json()
    assert ready["checks"]["broker"].startswith("error")

    with stack.side_by_side():
        stack.start_worker()
        stack.start_beat()
    for event_id in event_ids:
        assert wait_final(env, event_id, timeout=60) == EventStatus.PROCESSED
        assert effects_of(env, event_id) == ["effect", "second"]


def test_long_retry_waits_are_kept_in_the_database(stack: Stack) -> None:
    """A wait longer than half the visibility timeout is never a broker countdown: the
    event waits in the database and the sweeper publishes it when due."""
    env = stack.env
    settings = {
        "METERBRIDGE_VISIBILITY_TIMEOUT_SECONDS": "10",  # countdowns up to 5 s
        "METERBRIDGE_RETRY_CAP_SECONDS": "60",
    }
    source_id = factories.source(env)
    event_id = factories.event(env, source_id, "test.transient", fail_times=1, retry_after=7)
    with stack.side_by_side():
        worker = stack.start_worker(**settings)
        stack.start_beat(**settings)
    wait_for(lambda: status_of(env, event_id) == EventStatus.RETRYING, timeout=30)
    with Session(env.engine) as session:
        event = session.get(Event, event_id)
        assert event is not None
        assert event.sweep_after is None
    assert wait_final(env, event_id, timeout=40) == EventStatus.PROCESSED
    first, second = attempts_of(env, event_id)
    assert first.retry_at is not None
    assert (second.started_at - first.retry_at).total_seconds() >= 0
    assert (first.retry_at - first.started_at).total_seconds() >= 7
    # the worker scheduled no countdown: the retry came from the sweeper's message
    lines = worker.log().splitlines()
    retries = [json.loads(line) for line in lines if '"event.retry"' in line]
    assert [retry["waits_in"] for retry in retries] == ["database"]


def test_with_the_database_down_intake_answers_503_and_stores_nothing_half_written(
    tmp_path: Path,
) -> None:
    postgres = ThrowawayPostgres()
    postgres.start()
    env = make_env(tmp_path / "env", database_url=postgres.url)
    stack = Stack(env, tmp_path)
    try:
        stack.start_receiver()
        source_id, secret = new_source(env)
        accepted: list[str] = []
        answers: list[int] = []

        def send_some(client: httpx.Client, count: int) -> None:
            for n in range(count):
                body = body_of("test.effect", n=n)
                response = client.post(
                    f"{stack.receiver_url}/webhooks/{source_id}",
                    content=body,
                    headers=signed_headers(secret, body, f"msg_{uuid.uuid4().hex}"),
                )
                answers.append(response.status_code)
                if response.status_code == 202:
                    accepted.append(response.json()["event_id"])
                else:
                    assert response.status_code == 503
                    assert response.headers["retry-after"]
                    assert response.json()["code"] == "store_unavailable"

        with httpx.Client(timeout=30) as client:
            send_some(client, 10)
            assert answers == [202] * 10
            env.engine.dispose()
            postgres.stop()
            send_some(client, 10)
            assert answers[10:] == [503] * 10
            ready = client.get(f"{stack.receiver_url}/readyz")
            assert ready.status_code == 503
            postgres.start()
            wait_for(
                lambda: client.get(f"{stack.receiver_url}/readyz").status_code == 200, timeout=30
            )
            send_some(client, 10)
        assert answers[20:] == [202] * 10
        # every acknowledged event is stored, whole; nothing else is
        with Session(env.engine) as session:
            rows = session.exec(select(Event).where(Event.source_id == source_id)).all()
        assert sorted(row.id for row in rows) == sorted(accepted)
        assert all(json.loads(row.payload)["type"] == "test.effect" for row in rows)
    finally:
        stack.close()
        env.engine.dispose()
        postgres.remove()


def test_unique_provider_ids_hold_across_receivers(stack: Stack) -> None:
    """Two receiver processes racing on the same provider event id store it once."""
    env = stack.env
    first_url = stack.start_receiver() and stack.receiver_url
    second_url = stack.start_receiver() and stack.receiver_url
    source_id, secret = new_source(env)
    body = body_of("test.effect")
    headers = signed_headers(secret, body, "msg_race")

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{url}/webhooks/{source_id}", content=body, headers=headers)
                    for url in [first_url, second_url] * 10
                )
            )

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    with Session(env.engine) as session:
        count = session.exec(
            sa.select(sa.func.count()).select_from(Event).where(Event.source_id == source_id)
        ).scalar_one()
    assert count == 1
