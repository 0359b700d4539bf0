"""Hostile input on ``POST /webhooks/{source_id}``: every case answers its own 4xx with a
JSON ``{code, message}``, never a 5xx, and never fails another organisation's webhooks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from domain.db import transaction
from domain.eventlog import MAX_EXTERNAL_ID_CHARS, MAX_JSON_DEPTH, inbound_row
from domain.events import Event
from domain.organisations import DEFAULT_ORG_ID, create_organisation
from domain.providers.base import Envelope
from domain.providers.generic import sign as generic_sign
from domain.providers.paddle import sign as paddle_sign
from domain.providers.stripe import sign as stripe_sign
from domain.secrets import secret_box
from domain.sources import create_source
from receiver.app import create_app
from receiver.writer import IntakeWriter, RowRefused, Stored, StoreUnavailable
from tests.support.environment import Environment


@pytest.fixture
def client(env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings), raise_server_exceptions=False) as test_client:
        yield test_client


def source(env: Environment, provider: str, org_id: str = DEFAULT_ORG_ID) -> tuple[str, str]:
    with transaction(env.engine) as session:
        created, secret = create_source(
            session, secret_box(env.settings), org_id=org_id, name=provider, provider=provider
        )
    return created.id, secret


def other_org(env: Environment) -> str:
    with transaction(env.engine) as session:
        organisation, _key = create_organisation(session, "Neighbour")
    return organisation.id


def stored(env: Environment) -> int:
    with Session(env.engine) as session:
        return session.exec(sa.select(sa.func.count()).select_from(Event)).scalar_one()


def signed(provider: str, secret: str, body: bytes, msg_id: str | None = None) -> dict[str, str]:
    """Headers that pass ``provider``'s check for ``body``."""
    now = int(time.time())
    if provider == "generic":
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        signature = generic_sign(secret, msg_id, now, body)  # any bytes, not only UTF-8
        return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    if provider == "stripe":
        return {"stripe-signature": stripe_sign(secret, now, body)}
    if provider == "paddle":
        return {"paddle-signature": paddle_sign(secret, now, body)}
    return {"authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def send(
    client: TestClient, source_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"/webhooks/{source_id}", content=body, headers=headers)


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.headers["content-type"] == "application/json"
    message: str = response.json()["message"]
    assert message
    return message


# 1. A NUL (or a lone surrogate) in an event type or id: the event's own 400.


@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        ("generic", {"type": "invoice\u0000paid"}),
        ("generic", {"type": "invoice\ud800paid"}),
        ("stripe", {"id": "evt_\u0000", "type": "customer.created", "created": 1}),
        ("stripe", {"id": "evt_1", "type": "customer\u0000created"}),
        ("chargebee", {"id": "ev_\ud83d", "event_type": "customer_created"}),
        ("paddle", {"event_id": "evt_\u0000", "event_type": "subscription.created"}),
    ],
)
def test_a_nul_in_a_type_or_id_is_400_and_stores_nothing(
    client: TestClient, env: Environment, provider: str, payload: dict[str, Any]
) -> None:
    source_id, secret = source(env, provider)
    body = json.dumps(payload).encode()  # ensure_ascii: NUL and surrogates travel escaped
    message = refused(
        send(client, source_id, body, signed(provider, secret, body)), 400, "invalid_event"
    )
    assert "NUL" in message or "surrogate" in message
    assert stored(env) == 0


def _row(
    env: Environment, source_id: str, org_id: str, event_type: str, msg_id: str
) -> dict[str, Any]:
    row = inbound_row(
        org_id=org_id,
        source_id=source_id,
        provider="generic",
        envelope=Envelope(msg_id, "ok", None),
        body=b"{}",
        headers={},
        received_at=datetime.now(UTC),
        held=False,
    )
    row["type"] = event_type  # past the intake's checks: what the database itself refuses
    return row


def test_group_commit_isolates_a_row_the_database_refuses(env: Environment) -> None:
    """Rows the database refuses share a batch with good rows of another organisation:
    only they fail (permanently); the good rows and an in-batch repeat are stored."""
    neighbour = other_org(env)
    good_source, _ = source(env, "generic")
    bad_source, _ = source(env, "generic", org_id=neighbour)
    rows = [_row(env, good_source, DEFAULT_ORG_ID, "ok", f"good_{n}") for n in range(20)]
    rows.insert(5, _row(env, bad_source, neighbour, "nul\u0000type", "bad_nul"))
    rows.insert(12, _row(env, bad_source, neighbour, "surrogate\ud800", "bad_surrogate"))
    rows.append(_row(env, good_source, DEFAULT_ORG_ID, "ok", "good_3"))  # a repeat

    async def write_one_batch() -> list[Stored | BaseException]:
        writer = IntakeWriter(env.engine)
        stores = [asyncio.ensure_future(writer.store(row)) for row in rows]
        await asyncio.sleep(0)  # every request is queued before the writer starts
        writer.start()
        try:
            return await asyncio.gather(*stores, return_exceptions=True)
        finally:
            writer.stop()

    outcomes = asyncio.run(write_one_batch())
    failed = [
        row["external_id"]
        for row, out in zip(rows, outcomes, strict=True)
        if isinstance(out, BaseException)
    ]
    assert failed == ["bad_nul", "bad_surrogate"]
    assert all(isinstance(outcomes[i], RowRefused) for i in (5, 12))
    assert "NUL" in str(outcomes[5])
    assert isinstance(outcomes[-1], Stored)
    assert outcomes[-1].duplicate
    assert stored(env) == 20


def test_a_store_outage_still_fails_every_request_as_unavailable(env: Environment) -> None:
    dead = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    rows = [_row(env, "src_x", DEFAULT_ORG_ID, "ok", f"m{n}") for n in range(3)]
    rows[1]["type"] = "nul\u0000"

    async def write() -> list[Stored | BaseException]:
        writer = IntakeWriter(dead)
        stores = [asyncio.ensure_future(writer.store(row)) for row in rows]
        await asyncio.sleep(0)
        writer.start()
        try:
            return await asyncio.gather(*stores, return_exceptions=True)
        finally:
            writer.stop()

    outcomes = asyncio.run(write())
    assert all(isinstance(out, StoreUnavailable) for out in outcomes), outcomes


def test_another_organisations_nul_never_fails_my_webhooks(env: Environment) -> None:
    """Valid webhooks of one organisation interleaved with hostile ones (NUL in type and
    id) of another, concurrently through the app: every valid one is 202."""
    mine, my_secret = source(env, "generic")
    theirs, their_secret = source(env, "stripe", org_id=other_org(env))

    def hostile(n: int) -> tuple[str, bytes, dict[str, str]]:
        payload = (
            {"id": f"evt_{n}\u0000", "type": "customer.created"}
            if n % 2
            else {"id": f"evt_{n}", "type": f"customer\u0000{n}"}
        )
        body = json.dumps(payload).encode()
        return theirs, body, signed("stripe", their_secret, body)

    def valid(n: int) -> tuple[str, bytes, dict[str, str]]:
        body = json.dumps({"type": "invoice.paid", "n": n}).encode()
        return mine, body, signed("generic", my_secret, body, f"msg_{n}")

    requests = []
    for n in range(300):
        requests.append(valid(n))
        if n % 6 == 0:
            requests.append(hostile(n))

    async def send_all(app: Any) -> list[tuple[str, httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            limit = asyncio.Semaphore(100)

            async def one(
                source_id: str, body: bytes, headers: dict[str, str]
            ) -> tuple[str, httpx.Response]:
                async with limit:
                    return source_id, await http.post(
                        f"/webhooks/{source_id}", content=body, headers=headers
                    )

            return await asyncio.gather(*(one(*request) for request in requests))

    app = create_app(env.settings)
    with TestClient(app):  # runs the lifespan: the writer and the publisher
        answers = asyncio.run(send_all(app))
    statuses = {(source_id, response.status_code) for source_id, response in answers}
    assert statuses == {(mine, 202), (theirs, 400)}
    assert stored(env) == 300


# 2. Unauthenticated malformed signatures and source ids: 401 and 404, never 500 or 503.


@pytest.mark.parametrize(
    ("provider", "header"),
    [
        ("stripe", {"stripe-signature": "t=\u00b2,v1=00"}),
        ("stripe", {"stripe-signature": "t=" + "9" * 5000 + ",v1=00"}),
        ("paddle", {"paddle-signature": "ts=\u00b2;h1=00"}),
        ("paddle", {"paddle-signature": "ts=" + "9" * 5000 + ";h1=00"}),
        (
            "generic",
            {"webhook-id": "m", "webhook-timestamp": "\u00b2", "webhook-signature": "v1,AA=="},
        ),
        (
            "generic",
            {"webhook-id": "m", "webhook-timestamp": "9" * 5000, "webhook-signature": "v1,AA=="},
        ),
    ],
)
def test_a_malformed_signature_timestamp_is_401(
    client: TestClient, env: Environment, provider: str, header: dict[str, str]
) -> None:
    source_id, _secret = source(env, provider)
    # "²" is not latin-1 encodable as a raw header by httpx; send its UTF-8 bytes
    raw = {name: value.encode("utf-8") for name, value in header.items()}
    response = client.post(f"/webhooks/{source_id}", content=b"{}", headers=raw)
    refused(response, 401, "bad_timestamp")


@pytest.mark.parametrize("path", ["%00", "src_%00", "x" * 41, "%F0%9F%92%A5", "%ED%A0%80"])
def test_a_source_id_no_source_can_have_is_404(client: TestClient, path: str) -> None:
    response = client.post(f"/webhooks/{path}", content=b"{}")
    refused(response, 404, "unknown_source")


def test_a_content_length_of_odd_digits_is_not_a_500(client: TestClient, env: Environment) -> None:
    source_id, _secret = source(env, "generic")
    for declared in ("\u00b2", "9" * 5000):
        response = client.post(
            f"/webhooks/{source_id}", content=b"{}", headers={"content-length": declared.encode()}
        )
        assert response.status_code < 500, response.text


# 3. Signed bodies that are JSON to the sender but not to the log: 400 with the reason.


@pytest.mark.parametrize(
    ("provider", "body", "code", "says"),
    [
        ("generic", b"[" * 100_000 + b"]" * 100_000, "invalid_json", "deeper than 64"),
        (
            "stripe",
            b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
            "invalid_json",
            "deeper",
        ),
        ("generic", b'{"type": "x", "n": ' + b"7" * 5000 + b"}", "invalid_json", "4300 digits"),
        (
            "chargebee",
            b'{"id": "ev_1", "event_type": "x", "occurred_at": 100000000000000000000}',
            "invalid_event",
            "occurred_at",
        ),
        (
            "stripe",
            b'{"id": "evt_1", "type": "x", "created": 100000000000000000000}',
            "invalid_event",
            "created",
        ),
        ("stripe", b'{"id": "evt_1", "type": "x", "created": -1}', "invalid_event", "created"),
        ("generic", '{"type": "x"}'.encode("utf-16"), "invalid_json", "UTF-8"),
    ],
)
def test_a_signed_body_the_log_cannot_hold_is_400_with_the_reason(
    client: TestClient, env: Environment, provider: str, body: bytes, code: str, says: str
) -> None:
    source_id, secret = source(env, provider)
    message = refused(send(client, source_id, body, signed(provider, secret, body)), 400, code)
    assert says in message
    assert stored(env) == 0


def test_nesting_up_to_the_limit_and_a_long_number_under_it_are_stored(
    client: TestClient, env: Environment
) -> None:
    source_id, secret = source(env, "generic")
    nested = (
        b'{"type": "deep", "v": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    )
    number = b'{"type": "big", "n": ' + b"7" * 4300 + b"}"
    for body in (nested, number):
        assert send(client, source_id, body, signed("generic", secret, body)).status_code == 202


# 6. Ids over the column width: refused whole, never cut into a collision.


def test_ids_over_the_width_are_400_and_never_collide(client: TestClient, env: Environment) -> None:
    source_id, secret = source(env, "generic")
    shared = "m" * MAX_EXTERNAL_ID_CHARS
    body = json.dumps({"type": "invoice.paid"}).encode()
    for tail in ("_first", "_second"):
        response = send(client, source_id, body, signed("generic", secret, body, shared + tail))
        message = refused(response, 400, "invalid_event")
        assert f"at most {MAX_EXTERNAL_ID_CHARS}" in message
    assert stored(env) == 0
    exact = send(client, source_id, body, signed("generic", secret, body, shared))
    assert exact.status_code == 202
    with Session(env.engine) as session:
        event = session.get(Event, exact.json()["event_id"])
    assert event is not None
    assert event.external_id == shared


def test_a_stripe_id_over_the_width_is_400(client: TestClient, env: Environment) -> None:
    source_id, secret = source(env, "stripe")
    for n in range(2):
        body = json.dumps({"id": "evt_" + "x" * 300 + str(n), "type": "customer.created"}).encode()
        refused(send(client, source_id, body, signed("stripe", secret, body)), 400, "invalid_event")
    assert stored(env) == 0
