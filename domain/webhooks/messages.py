"""Webhook messages and their attempts: what was sent where, and how each try went.

A message is one event's payload for one destination: created when a notification rule
fires (once per (firing, destination), whatever happens to the task that creates it), or by
``POST …/test``. Its body is fixed when it is created, so every attempt sends the same
bytes under the same ``webhook-id`` (the message's id) and a receiver can drop repeats.

Each message travels as a ``webhook.deliver`` work item through the event log, so the
spine's claims, leases, sweeper and dead letters carry it; its retry schedule is the
webhooks' own (``METERBRIDGE_WEBHOOK_RETRY_SCHEDULE``). Every attempt that reached the
point of sending is recorded here (time, status, duration, the first 1 KiB of the answer);
a worker killed mid-send leaves no attempt row, only the spine's ``lost`` attempt, and the
message is sent again.

    pending ──2xx──> succeeded
       │  ├─retry schedule used up, permanent refusal, 410──> failed ──replay──> pending
       │  └─destination disabled when its turn came──> held ──enable──> pending
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, Text, col, select

from domain.clock import utcnow
from domain.eventlog import append_internal
from domain.ids import new_id
from domain.webhooks.destinations import WebhookDestination

#: The work item that delivers one message: payload ``{"message_id": ...}``.
WEBHOOK_DELIVER = "webhook.deliver"
#: How much of an answer an attempt keeps.
ANSWER_CHARS = 1024


class MessageStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HELD = "held"


class AttemptResult(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a non-2xx answer, no answer in time, a connection failure
    RETRY_LATER = "retry_later"  # 429/502/503/504
    GONE = "gone"  # 410: the destination is disabled
    REFUSED = "refused"  # the SSRF policy refused the URL or address: nothing was sent


class WebhookMessage(SQLModel, table=True):
    __tablename__ = "webhook_message"
    __table_args__ = (
        # One message per firing and destination; a test message has no firing.
        sa.UniqueConstraint("firing_id", "destination_id", name="uq_webhook_message_firing"),
        sa.Index("ix_webhook_message_destination", "destination_id", "status", "id"),
    )

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    destination_id: str = Field(foreign_key="webhook_destination.id", max_length=40)
    firing_id: str | None = Field(default=None, max_length=40)
    #: The catalogue event it tells of; None for a test message.
    event_id: str | None = Field(default=None, max_length=40)
    event_type: str = Field(max_length=200)
    body: str = Field(sa_type=Text)
    status: str = Field(default=MessageStatus.PENDING, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
    failed_at: datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    __table_args__ = (sa.Index("ix_webhook_attempt_destination", "destination_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(foreign_key="webhook_message.id", index=True, max_length=40)
    destination_id: str = Field(max_length=40)
    org_id: str = Field(max_length=40)
    number: int
    attempted_at: datetime
    result: str = Field(max_length=16)
    status_code: int | None = None
    duration_ms: float | None = None
    #: The first 1 KiB of the answer's body, as text (undecodable bytes replaced).
    answer: str = Field(default="", sa_type=Text)
    #: Why it failed, for a person; None when it succeeded.
    error: str | None = Field(default=None, sa_type=Text)
    #: The address connected to; None when no connection was made.
    address: str | None = Field(default=None, max_length=64)


def message_body(event_type: str, event_id: str | None, occurred_at: datetime, payload: Any) -> str:
    """The JSON every attempt of the message sends: Standard Webhooks' ``type`` /
    ``timestamp`` / ``data`` envelope, plus the event's id."""
    envelope = {
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "event_id": event_id,
        "data": payload,
    }
    return json.dumps(envelope, separators=(",", ":"), default=str)


def add_message(
    session: Session,
    destination: WebhookDestination,
    *,
    event_type: str,
    body: str,
    event_id: str | None = None,
    firing_id: str | None = None,
    caused_by: str | None = None,
) -> tuple[WebhookMessage, str]:
    """Create the message and its ``webhook.deliver`` work item (whose id is returned
    beside it) in the caller's transaction."""
    message = WebhookMessage(
        org_id=destination.org_id,
        destination_id=destination.id,
        firing_id=firing_id,
        event_id=event_id,
        event_type=event_type,
        body=body,
    )
    session.add(message)
    session.flush()
    return message, _deliver(session, message, caused_by)


def _deliver(session: Session, message: WebhookMessage, caused_by: str | None) -> str:
    event = append_internal(
        session,
        org_id=message.org_id,
        type=WEBHOOK_DELIVER,
        payload={"message_id": message.id},
        caused_by=caused_by,
    )
    return event.id


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one try of a message came to, as the delivery task saw it."""

    result: AttemptResult
    status_code: int | None = None
    duration_seconds: float | None = None
    answer: bytes = b""
    error: str | None = None
    address: str | None = None
    #: Seconds the receiver asked to wait (``Retry-After`` of a 429/502/503/504).
    retry_after: float | None = None
    #: When the attempt began; None: when it is recorded.
    started_at: datetime | None = None


def record_attempt(
    session: Session, message: WebhookMessage, record: AttemptRecord, at: datetime
) -> WebhookAttempt:
    message.attempts += 1
    attempt = WebhookAttempt(
        message_id=message.id,
        destination_id=message.destination_id,
        org_id=message.org_id,
        number=message.attempts,
        attempted_at=record.started_at or at,
        result=record.result,
        status_code=record.status_code,
        duration_ms=None
        if record.duration_seconds is None
        else round(record.duration_seconds * 1000, 3),
        answer=record.answer[:ANSWER_CHARS].decode("utf-8", errors="replace"),
        error=record.error,
        address=record.address,
    )
    if record.result == AttemptResult.SUCCEEDED:
        message.status, message.delivered_at, message.last_error = (
            MessageStatus.SUCCEEDED,
            at,
            None,
        )
    else:
        message.last_error = record.error
    session.add_all([message, attempt])
    return attempt


def mark_failed(session: Session, message: WebhookMessage, at: datetime) -> None:
    message.status, message.failed_at = MessageStatus.FAILED, at
    session.add(message)


def hold(session: Session, message: WebhookMessage) -> None:
    message.status = MessageStatus.HELD
    session.add(message)


def release_held(session: Session, destination_id: str) -> list[str]:
    """Put the destination's held messages back on their way, oldest first; the ids of
    the work items to publish."""
    held = session.exec(
        select(WebhookMessage)
        .where(
            col(WebhookMessage.destination_id) == destination_id,
            col(WebhookMessage.status) == MessageStatus.HELD,
        )
        .order_by(col(WebhookMessage.id))
        .with_for_update()
    ).all()
    return [_requeue(session, message) for message in held]


def _requeue(session: Session, message: WebhookMessage) -> str:
    message.status, message.failed_at = MessageStatus.PENDING, None
    session.add(message)
    return _deliver(session, message, None)


@dataclass(frozen=True, slots=True)
class MessageFilter:
    org_id: str
    destination_id: str
    status: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    message_ids: Sequence[str] | None = None
    before: str | None = None  # a message id: page backwards from it


def _select(filt: MessageFilter) -> Any:
    statement = select(WebhookMessage).where(
        col(WebhookMessage.org_id) == filt.org_id,
        col(WebhookMessage.destination_id) == filt.destination_id,
    )
    if filt.status:
        statement = statement.where(col(WebhookMessage.status) == filt.status)
    if filt.event_type:
        statement = statement.where(col(WebhookMessage.event_type) == filt.event_type)
    if filt.since:
        statement = statement.where(col(WebhookMessage.created_at) >= filt.since)
    if filt.until:
        statement = statement.where(col(WebhookMessage.created_at) < filt.until)
    if filt.message_ids is not None:
        statement = statement.where(col(WebhookMessage.id).in_(filt.message_ids))
    if filt.before:
        statement = statement.where(col(WebhookMessage.id) < filt.before)
    return statement


def list_messages(
    session: Session, filt: MessageFilter, *, limit: int = 50
) -> list[WebhookMessage]:
    statement = _select(filt).order_by(col(WebhookMessage.id).desc()).limit(limit)
    return list(session.exec(statement))


def list_attempts(
    session: Session,
    org_id: str,
    destination_id: str,
    *,
    message_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[WebhookAttempt]:
    statement = select(WebhookAttempt).where(
        col(WebhookAttempt.org_id) == org_id,
        col(WebhookAttempt.destination_id) == destination_id,
    )
    if message_id:
        statement = statement.where(col(WebhookAttempt.message_id) == message_id)
    if before is not None:
        statement = statement.where(col(WebhookAttempt.id) < before)
    return list(session.exec(statement.order_by(col(WebhookAttempt.id).desc()).limit(limit)))


@dataclass(frozen=True, slots=True)
class Replayed:
    message_ids: list[str]
    #: The work items to publish; empty on a dry run.
    deliveries: list[str]
    dry_run: bool


#: Most messages one replay request sends again.
REPLAY_LIMIT = 10_000


def replay_failed(
    session: Session, filt: MessageFilter, *, dry_run: bool, limit: int = REPLAY_LIMIT
) -> Replayed:
    """Send failed messages again (those the filter selects; the filter's status is
    ignored: only failed messages are replayed). A dry run only says which."""
    statement = (
        _select(replace(filt, status=MessageStatus.FAILED))
        .order_by(col(WebhookMessage.id))
        .limit(limit)
    )
    if not dry_run:
        statement = statement.with_for_update(skip_locked=True)
    messages = list(session.exec(statement))
    deliveries = [] if dry_run else [_requeue(session, message) for message in messages]
    return Replayed([message.id for message in messages], deliveries, dry_run)
