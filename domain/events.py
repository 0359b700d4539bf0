"""The event log. Every inbound webhook and every internal change is one row.

The columns from ``org_id`` to ``headers`` are written once and never changed. The
processing columns below them make the row its own outbox: the sweeper finds work that
no worker has picked up, and the status says where the event is in its life:

    pending ──claim──> processing ──> processed | ignored
       ^                  │
       │                  ├──transient──> retrying ──(due)──> processing
       │                  ├──wait for turn──> retrying (the attempt is given back)
       │                  └──permanent / attempts used up──> dead ──replay──> pending
    held (source disabled) ──enable──> pending
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel, Text


class EventStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    PROCESSED = "processed"
    IGNORED = "ignored"
    HELD = "held"
    DEAD = "dead"


#: Statuses a sweeper may still have to act on.
OPEN_STATUSES = (EventStatus.PENDING, EventStatus.PROCESSING, EventStatus.RETRYING)


class AttemptOutcome(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    IGNORED = "ignored"
    RETRY = "retry"
    WAITED = "waited"  # a rate limit had no room: retried without using an attempt
    DEAD = "dead"
    LOST = "lost"  # the worker died (or lost its lease) before recording an outcome


class Event(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("source_id", "external_id", name="uq_event_source_external"),
        sa.Index(
            "ix_event_open",
            "status",
            "id",
            postgresql_where=sa.text("status IN ('pending', 'processing', 'retrying')"),
        ),
        sa.Index("ix_event_org_status_id", "org_id", "status", "id"),
        sa.Index("ix_event_org_type_id", "org_id", "type", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    source_id: str | None = Field(default=None, foreign_key="source.id", max_length=40)
    provider: str = Field(max_length=32)
    type: str = Field(max_length=200)
    external_id: str | None = Field(default=None, max_length=255)
    occurred_at: datetime | None = None
    received_at: datetime
    payload: str = Field(sa_column=Column(Text, nullable=False))
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The event whose processing appended this one (an internal follow-up).
    caused_by: str | None = Field(default=None, max_length=40, index=True)

    status: str = Field(default=EventStatus.PENDING, max_length=16)
    attempts: int = 0
    replays: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    sweeps: int = 0
    sweep_after: datetime | None = None
    finished_at: datetime | None = None
    dead_at: datetime | None = None
    dead_reason: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    #: Error events are marked actioned by a person once dealt with.
    actioned_at: datetime | None = None
    actioned_by: str | None = Field(default=None, max_length=200)


class Attempt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="event.id", index=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    number: int
    replay: int = 0
    task_id: str | None = Field(default=None, max_length=64)
    worker: str | None = Field(default=None, max_length=200)
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    outcome: str = Field(default=AttemptOutcome.STARTED, max_length=16)
    error_class: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    retry_at: datetime | None = None


class LedgerEntry(SQLModel, table=True):
    """Proof that one handler's effects for one event are committed."""

    __tablename__ = "ledger"

    event_id: str = Field(foreign_key="event.id", primary_key=True, max_length=40)
    handler: str = Field(primary_key=True, max_length=200)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    committed_at: datetime
