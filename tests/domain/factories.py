"""Small factories for domain tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import inbound_row
from domain.events import Event
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import create_credential
from domain.organisations import DEFAULT_ORG_ID
from domain.providers.base import Envelope
from domain.secrets import secret_box
from domain.sources import create_source
from tests.support.environment import Environment


def source(env: Environment, *, enabled: bool = True) -> str:
    with transaction(env.engine) as session:
        created, _ = create_source(
            session, secret_box(env.settings), org_id=DEFAULT_ORG_ID, name="s", provider="generic"
        )
        created.enabled = enabled
    return created.id


def event(
    env: Environment, source_id: str, event_type: str, *, held: bool = False, **payload: Any
) -> str:
    row = inbound_row(
        org_id=DEFAULT_ORG_ID,
        source_id=source_id,
        provider="generic",
        envelope=Envelope(f"msg_{uuid.uuid4().hex}", event_type, None),
        body=json.dumps({"type": event_type, **payload}).encode(),
        headers={},
        received_at=utcnow(),
        held=held,
    )
    with transaction(env.engine) as session:
        session.add(Event(**row))
    return row["id"]


class Published:
    """A ``domain.routing.Publish`` that records each call's (id, type) pairs and, as
    another connection sees them at that moment, the events' statuses (None: not
    committed yet), so a test can tell publishing after the commit from before it."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.calls: list[list[tuple[str, str]]] = []
        self.seen: dict[str, str | None] = {}

    def __call__(self, events: Iterable[tuple[str, str]]) -> int:
        pairs = list(events)
        self.calls.append(pairs)
        ids = [event_id for event_id, _ in pairs]
        with Session(self.env.engine) as session:
            statuses = dict(
                session.exec(select(Event.id, Event.status).where(col(Event.id).in_(ids))).all()
            )
        self.seen.update({event_id: statuses.get(event_id) for event_id in ids})
        return len(pairs)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [pair for call in self.calls for pair in call]


def chargebee_config(session: Session, env: Environment, org_id: str) -> IntegrationConfig:
    """A Chargebee integration config of the organisation, with a credential attached."""
    credential = create_credential(
        session,
        secret_box(env.settings),
        org_id,
        name="site",
        destination="chargebee",
        site="acme",
        api_key="test_cb_key",
    )
    config = IntegrationConfig(
        org_id=org_id,
        name="cb",
        destination="chargebee",
        destination_config={"default_price_id": "cb-default"},
        credential_id=credential.id,
    )
    session.add(config)
    return config
