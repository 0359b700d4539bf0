"""Sending webhooks as a Standard Webhooks sender does, signed by the official library."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import Session
from standardwebhooks import Webhook

from domain.db import transaction
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from domain.sources import create_source
from tests.support.environment import Environment


def new_source(env: Environment, name: str = "test") -> tuple[str, str]:
    with transaction(env.engine) as session:
        source, secret = create_source(
            session, secret_box(env.settings), org_id=DEFAULT_ORG_ID, name=name, provider="generic"
        )
    return source.id, secret


def signed_headers(
    secret: str, body: bytes, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def body_of(event_type: str, **data: Any) -> bytes:
    return json.dumps(
        {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data, **data}
    ).encode()


def send(
    client: httpx.Client,
    base_url: str,
    source_id: str,
    secret: str,
    event_type: str,
    *,
    msg_id: str | None = None,
    **data: Any,
) -> httpx.Response:
    body = body_of(event_type, **data)
    return client.post(
        f"{base_url}/webhooks/{source_id}",
        content=body,
        headers=signed_headers(secret, body, msg_id),
    )


def status_of(env: Environment, event_id: str) -> str:
    from domain.events import Event

    with Session(env.engine) as session:
        event = session.get(Event, event_id)
        return event.status if event else "missing"
