"""The spine end to end with real processes: receiver (uvicorn), Celery worker and beat,
against the configured database and broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from domain.db import transaction
from domain.events import Attempt, Event, EventStatus
from domain.organisations import DEFAULT_ORG_ID, create_api_key
from tests.support import handlers
from tests.support.environment import Environment
from tests.support.processes import Stack, wait_for
from tests.support.webhooks import body_of, new_source, send, signed_headers, status_of

FINAL = {EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.DEAD}


def wait_final(env: Environment, event_id: str, timeout: float = 30) -> str:
    return wait_for(
        lambda: (s := status_of(env, event_id)) in FINAL and s,
        timeout=timeout,
        what=f"{event_id} to finish",
    )


def effects_of(env: Environment, event_id: str) -> list[str]:
    with env.engine.connect() as connection:
        rows = connection.execute(
            sa.select(handlers.effects.c.handler).where(handlers.effects.c.event_id == event_id)
        )
        return sorted(row.handler for row in rows)


def attempts_of(env: Environment, event_id: str) -> list[Attempt]:
    with Session(env.engine) as session:
        return list(
            session.exec(select(Attempt).where(Attempt.event_id == event_id).order_by(Attempt.id))
        )


def cli(env: Environment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env.process_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_webhook_is_stored_then_processed_once(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        response = send(client, running.receiver_url, source_id, secret, "test.effect")
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    assert wait_final(env, event_id) == EventStatus.PROCESSED
    assert effects_of(env, event_id) == ["effect", "second"]
    assert [a.outcome for a in attempts_of(env, event_id)] == ["succeeded"]


def test_a_duplicate_storm_makes_one_event_and_one_effect(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    body = body_of("test.effect")
    headers = signed_headers(secret, body, "msg_storm")

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=running.receiver_url, timeout=30) as client:
            url = f"/webhooks/{source_id}"
            return await asyncio.gather(
                *(client.post(url, content=body, headers=headers) for _ in range(50))
            )

    responses = asyncio.run(storm())
    assert sorted(r.status_code for r in responses) == [200] * 49 + [202]
    event_ids = {r.json()["event_id"] for r in responses}
    assert len(event_ids) == 1
    event_id = event_ids.pop()
    assert wait_final(env, event_id) == EventStatus.PROCESSED
    assert effects_of(env, event_id) == ["effect", "second"]


def test_transient_failures_retry_with_backoff_then_succeed(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        event_id = send(
            client, running.receiver_url, source_id, secret, "test.transient", fail_times=2
        ).json()["event_id"]
    assert wait_final(env, event_id) == EventStatus.PROCESSED
    attempts = attempts_of(env, event_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "succeeded"]
    assert all(a.error_class == "domain.errors.TransientError" for a in attempts[:2])
    assert all(a.retry_at is not None and a.duration_ms is not None for a in attempts[:2])
    assert effects_of(env, event_id) == ["transient"]


def test_unexpected_errors_exhaust_their_attempts_into_dead_letters(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        event_id = send(client, running.receiver_url, source_id, secret, "test.crash").json()[
            "event_id"
        ]
    assert wait_final(env, event_id) == EventStatus.DEAD
    with Session(env.engine) as session:
        event = session.get(Event, event_id)
    assert event is not None
    assert (event.dead_reason, event.attempts) == ("exhausted", 4)
    assert [a.outcome for a in attempts_of(env, event_id)] == ["retry"] * 3 + ["dead"]


def test_a_dead_letter_replays_once_its_cause_is_fixed(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        event_id = send(
            client, running.receiver_url, source_id, secret, "test.fixable", key=source_id
        ).json()["event_id"]
    assert wait_final(env, event_id) == EventStatus.DEAD

    listed = cli(env, "dead-letters", "list", "--source", source_id, "--json")
    assert listed.returncode == 0, listed.stderr
    [dead] = json.loads(listed.stdout)
    assert dead["id"] == event_id
    assert dead["dead_reason"] == "permanent"
    assert f"no mapping for {source_id}" in dead["last_error"]

    dry = cli(env, "dead-letters", "replay", "--source", source_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert event_id in dry.stdout
    assert status_of(env, event_id) == EventStatus.DEAD

    # when the operator fixes the cause and replays
    with transaction(env.engine) as session:
        session.execute(handlers.fixes.insert().values(key=source_id))
    replayed = cli(env, "dead-letters", "replay", event_id)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 of 1" in replayed.stdout
    assert wait_final(env, event_id) == EventStatus.PROCESSED
    assert effects_of(env, event_id) == ["fixable"]
    # the history keeps both lives of the event
    attempts = attempts_of(env, event_id)
    assert [(a.replay, a.outcome) for a in attempts] == [(0, "dead"), (1, "succeeded")]
    # replaying again finds nothing dead, and changes nothing
    again = cli(env, "dead-letters", "replay", event_id)
    assert again.returncode == 0, again.stderr
    assert "is not dead (status: processed); nothing to replay" in again.stdout
    assert len(attempts_of(env, event_id)) == 2


def test_dead_letters_over_http(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with transaction(env.engine) as session:
        _, api_key = create_api_key(session, DEFAULT_ORG_ID, "test")
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=running.receiver_url, timeout=30) as client:
        ids = [
            send(client, "", source_id, secret, "test.fixable", key=f"{source_id}-{n}").json()[
                "event_id"
            ]
            for n in range(3)
        ]
        for event_id in ids:
            assert wait_final(env, event_id) == EventStatus.DEAD
        assert client.get("/api/v1/dead-letters").status_code == 401
        listed = client.get("/api/v1/dead-letters", params={"source_id": source_id}, headers=auth)
        assert [e["id"] for e in listed.json()] == ids

        refused = client.post("/api/v1/dead-letters/replay", json={}, headers=auth)
        assert refused.status_code == 422
        unknown_field = client.post(
            "/api/v1/dead-letters/replay", json={"sourceid": source_id}, headers=auth
        )
        assert unknown_field.status_code == 422
        assert unknown_field.json()["errors"][0]["field"] == "body.sourceid"

        dry = client.post(
            "/api/v1/dead-letters/replay",
            json={"source_id": source_id, "dry_run": True},
            headers=auth,
        ).json()
        assert dry == {"dry_run": True, "matched": 3, "replayed": ids}
        assert {status_of(env, i) for i in ids} == {EventStatus.DEAD}

        with transaction(env.engine) as session:
            for n in range(3):
                session.execute(handlers.fixes.insert().values(key=f"{source_id}-{n}"))
        done = client.post(
            "/api/v1/dead-letters/replay",
            json={"source_id": source_id, "error_contains": "no mapping"},
            headers=auth,
        ).json()
        assert done == {"dry_run": False, "matched": 3, "replayed": ids}
        for event_id in ids:
            assert wait_final(env, event_id) == EventStatus.PROCESSED
        detail = client.get(f"/api/v1/events/{ids[0]}", headers=auth).json()
        assert [h["outcome"] for h in detail["history"]] == ["dead", "succeeded"]


def test_a_disabled_source_holds_events_until_enabled(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    assert cli(env, "sources", "disable", source_id).returncode == 0
    shown = json.loads(cli(env, "sources", "show", source_id, "--json").stdout)
    assert shown["enabled"] is False
    # the receiver caches sources for a few seconds; the worker re-checks, so either way
    # the events end up held rather than processed
    with httpx.Client() as client:
        ids = [
            send(client, running.receiver_url, source_id, secret, "test.effect").json()["event_id"]
            for _ in range(3)
        ]
    for event_id in ids:
        wait_for(lambda e=event_id: status_of(env, e) == EventStatus.HELD, timeout=20)
    assert all(effects_of(env, e) == [] for e in ids)

    enabled = cli(env, "sources", "enable", source_id)
    assert enabled.returncode == 0, enabled.stderr
    assert "3 held events released" in enabled.stdout
    for event_id in ids:
        assert wait_final(env, event_id) == EventStatus.PROCESSED
        assert effects_of(env, event_id) == ["effect", "second"]


def test_events_are_listed_and_shown_by_the_cli(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        event_id = send(client, running.receiver_url, source_id, secret, "nobody.listens").json()[
            "event_id"
        ]
    assert wait_final(env, event_id) == EventStatus.IGNORED
    listed = cli(env, "events", "list", "--source", source_id, "--json")
    assert [e["id"] for e in json.loads(listed.stdout)] == [event_id]
    shown = json.loads(cli(env, "events", "show", event_id, "--json").stdout)
    assert shown["status"] == "ignored"
    assert shown["payload"]["type"] == "nobody.listens"
    assert shown["headers"]["webhook-signature"] == "[redacted]"
    assert [h["outcome"] for h in shown["history"]] == ["ignored"]
    table = cli(env, "events", "show", event_id)
    assert "ignored" in table.stdout
    missing = cli(env, "events", "show", "evt_missing")
    assert missing.returncode == 1
    assert "no event 'evt_missing'" in missing.stderr
