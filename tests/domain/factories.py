"""Small factories for domain tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import inbound_row
from domain.events import Event
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


def event(env: Environment, source_id: str, event_type: str, **payload: Any) -> str:
    row = inbound_row(
        org_id=DEFAULT_ORG_ID,
        source_id=source_id,
        provider="generic",
        envelope=Envelope(f"msg_{uuid.uuid4().hex}", event_type, None),
        body=json.dumps({"type": event_type, **payload}).encode(),
        headers={},
        received_at=utcnow(),
        held=False,
    )
    with transaction(env.engine) as session:
        session.add(Event(**row))
    return row["id"]
