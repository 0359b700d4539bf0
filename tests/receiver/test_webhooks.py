"""Intake in-process (the ASGI app with its real writer and publisher): every answer the
receiver gives, and what it stored for each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from domain.events import Event, EventStatus
from receiver.app import create_app
from tests.support.environment import Environment
from tests.support.webhooks import body_of, new_source, signed_headers


@pytest.fixture
def client(env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def stored(env: Environment) -> int:
    with Session(env.engine) as session:
        return session.exec(sa.select(sa.func.count()).select_from(Event)).scalar_one()


def post(
    client: TestClient, source_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"/webhooks/{source_id}", content=body, headers=headers)


def test_a_signed_event_is_stored_and_acknowledged(client: TestClient, env: Environment) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid", invoice="inv_1")
    response = post(client, source_id, body, signed_headers(secret, body, "msg_1"))
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    with Session(env.engine) as session:
        event = session.get(Event, event_id)
    assert event is not None
    assert (event.source_id, event.type, event.external_id) == (source_id, "invoice.paid", "msg_1")
    assert event.payload == body.decode()
    assert event.headers["webhook-signature"] == "[redacted]"
    assert event.headers["webhook-id"] == "msg_1"
    assert event.status == EventStatus.PENDING


def test_a_repeat_answers_200_with_the_same_event(client: TestClient, env: Environment) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid")
    first = post(client, source_id, body, signed_headers(secret, body, "msg_dup"))
    again = post(client, source_id, body, signed_headers(secret, body, "msg_dup"))
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert stored(env) == 1


def test_the_same_provider_id_on_another_source_is_another_event(
    client: TestClient, env: Environment
) -> None:
    (first_id, first_secret), (second_id, second_secret) = new_source(env), new_source(env)
    body = body_of("invoice.paid")
    a = post(client, first_id, body, signed_headers(first_secret, body, "msg_same"))
    b = post(client, second_id, body, signed_headers(second_secret, body, "msg_same"))
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["event_id"] != b.json()["event_id"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing_signature"),
        (lambda h: h | {"webhook-signature": "v1,Zm9v"}, "bad_signature"),
        (
            lambda h: h | {"webhook-timestamp": str(int(datetime.now(UTC).timestamp()) - 301)},
            "stale_timestamp",
        ),
    ],
)
def test_bad_signatures_are_401_and_store_nothing(
    client: TestClient, env: Environment, headers, code: str
) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid")
    response = post(client, source_id, body, headers(signed_headers(secret, body)))
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert stored(env) == 0


def test_a_stale_but_correctly_signed_event_is_refused(
    client: TestClient, env: Environment
) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid")
    old = signed_headers(secret, body, at=datetime.now(UTC) - timedelta(minutes=10))
    assert post(client, source_id, body, old).json()["code"] == "stale_timestamp"


def test_unknown_source_is_404(client: TestClient, env: Environment) -> None:
    body = body_of("x")
    response = post(
        client, "src_nope", body, signed_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body)
    )
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_source"


def test_a_body_over_the_limit_is_413(client: TestClient, env: Environment) -> None:
    source_id, secret = new_source(env)
    body = json.dumps({"type": "big", "blob": "x" * (1024 * 1024)}).encode()
    response = post(client, source_id, body, signed_headers(secret, body))
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    # a chunked body with no Content-Length is measured as it streams
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    streamed = client.post(
        f"/webhooks/{source_id}", content=chunks, headers=signed_headers(secret, body)
    )
    assert streamed.status_code == 413
    assert stored(env) == 0


def test_a_body_that_is_not_json_is_400_with_the_position(
    client: TestClient, env: Environment
) -> None:
    source_id, secret = new_source(env)
    body = b'{"type": "x",, }'
    response = post(client, source_id, body, signed_headers(secret, body))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert "line 1 column 14" in response.json()["message"]
    assert stored(env) == 0


def test_a_disabled_source_stores_events_as_held(client: TestClient, env: Environment) -> None:
    source_id, secret = new_source(env)
    with Session(env.engine) as session:
        session.execute(
            sa.text("UPDATE source SET enabled = false WHERE id = :id"), {"id": source_id}
        )
        session.commit()
    body = body_of("invoice.paid")
    response = post(client, source_id, body, signed_headers(secret, body))
    assert response.status_code == 202
    with Session(env.engine) as session:
        event = session.get(Event, response.json()["event_id"])
    assert event is not None
    assert event.status == EventStatus.HELD


def test_a_duplicate_storm_stores_one_event(env: Environment) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid")
    headers = signed_headers(secret, body, "msg_storm")

    async def storm() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            sends = [
                client.post(f"/webhooks/{source_id}", content=body, headers=headers)
                for _ in range(50)
            ]
            return await asyncio.gather(*sends)

    app = create_app(env.settings)
    with TestClient(app):  # runs the lifespan (writer, publisher)
        responses = asyncio.run(storm())
    assert sorted(r.status_code for r in responses) == [200] * 49 + [202]
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert stored(env) == 1


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readiness_reports_a_broker_that_does_not_answer(env: Environment) -> None:
    settings = env.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("error")
