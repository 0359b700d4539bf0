"""Handlers the integration tests register in their workers
(``METERBRIDGE_HANDLER_MODULES=["tests.support.handlers"]``), and the tables they write.

``test_effect`` rows are deliberately not unique per event: if a handler's effect were
ever committed twice, the tests would count two rows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from domain.errors import PermanentError, TransientError
from domain.eventlog import append_internal
from domain.events import Event
from domain.handlers import InboundEvent, registry
from domain.notifications.emails import SEND_EMAIL, Email

metadata = sa.MetaData()

effects = sa.Table(
    "test_effect",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(40), nullable=False, index=True),
    sa.Column("handler", sa.String(100), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)

fixes = sa.Table("test_fix", metadata, sa.Column("key", sa.String(100), primary_key=True))


def _effect(session: Session, event: InboundEvent, handler: str) -> None:
    session.execute(effects.insert().values(event_id=event.id, handler=handler, pid=os.getpid()))


def _attempt(session: Session, event: InboundEvent) -> int:
    row = session.get(Event, event.id)
    assert row is not None
    return row.attempts


@registry.register("generic", "test.effect")
def record_effect(session: Session, event: InboundEvent) -> None:
    _effect(session, event, "effect")


@registry.register("generic", "test.effect")
def record_second_effect(session: Session, event: InboundEvent) -> None:
    """A second handler for the same type: each commits with its own ledger row. It may
    take a while (``sleep`` in the payload), so that a killed worker dies mid-handler."""
    _effect(session, event, "second")
    time.sleep(float(event.payload.get("sleep", 0)))


@registry.register("generic", "test.slow")
def slow_effect(session: Session, event: InboundEvent) -> None:
    """Writes its effect, announces it is mid-handler, then sleeps (first attempt only)."""
    _effect(session, event, "slow")
    session.flush()
    if _attempt(session, event) == 1:
        Path(event.payload["marker"]).write_text(str(os.getpid()))
        time.sleep(float(event.payload.get("sleep", 60)))


@registry.register("generic", "test.transient")
def flaky(session: Session, event: InboundEvent) -> None:
    """Fails transiently on the first ``fail_times`` attempts, then succeeds."""
    if _attempt(session, event) <= int(event.payload["fail_times"]):
        raise TransientError("upstream timed out", retry_after=event.payload.get("retry_after"))
    _effect(session, event, "transient")


@registry.register("generic", "test.permanent")
def always_rejected(session: Session, event: InboundEvent) -> None:
    raise PermanentError(f"rejected: account {event.payload.get('account', '?')} is unknown")


@registry.register("generic", "test.fixable")
def needs_fix(session: Session, event: InboundEvent) -> None:
    """Fails permanently until the test inserts its fix, as an operator would add a mapping."""
    key = event.payload["key"]
    if session.execute(sa.select(fixes.c.key).where(fixes.c.key == key)).first() is None:
        raise PermanentError(f"no mapping for {key}")
    _effect(session, event, "fixable")


@registry.register("generic", "test.crash")
def buggy(session: Session, event: InboundEvent) -> None:
    """An unexpected exception: retried like a transient error, then dead as exhausted."""
    raise KeyError("missing field")


@registry.register("generic", "test.email")
def queue_email(session: Session, event: InboundEvent) -> None:
    """Queues one email to the user the payload names, the way a notification does."""
    email = Email(
        org_id=event.org_id,
        notice_event_id=event.id,
        user_id=event.payload["user_id"],
        to_address=event.payload["to"],
        subject=f"notice {event.payload['n']}",
        text_body="text",
        html_body="<p>html</p>",
    )
    session.add(email)
    session.flush()
    append_internal(
        session,
        org_id=event.org_id,
        type=SEND_EMAIL,
        payload={"email_id": email.id},
        caused_by=event.id,
    )
