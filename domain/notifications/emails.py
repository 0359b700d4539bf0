"""Telling people by email: a config, source or webhook destination that was disabled
emails the users chosen for it; a notification rule emails its users
(``domain.notifications.matching``), one ``Email`` per (firing, user).

The ``integration.disabled.error`` / ``source.disabled`` / ``webhook_destination.disabled``
event is processed like any other:
its handler writes one ``Email`` per chosen user, unique per (notice, user), and appends an
``email.send`` event for each, which the ``meterbridge.send_email`` task delivers with the
spine's retries and backoff. The uniqueness and the ledger make sure nobody gets the same
notice twice, also when a task is redelivered.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, Text, col, select

from domain.clock import utcnow
from domain.eventlog import INTERNAL_PROVIDER, append_internal
from domain.events import Event, EventStatus
from domain.handlers import InboundEvent, registry
from domain.ids import new_id
from domain.integrations.configs import IntegrationConfig
from domain.integrations.runs import IntegrationRun, RunStatus
from domain.notifications.rendering import DisabledNotice, RenderedEmail, render_disabled_notice
from domain.retry import Decision, GiveUp
from domain.sources import Source
from domain.users import User
from domain.webhooks.destinations import WebhookDestination
from domain.webhooks.messages import AttemptResult, WebhookAttempt

SEND_EMAIL = "email.send"
RECENT_ERRORS = 10


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Email(SQLModel, table=True):
    __table_args__ = (
        # One email per notice and user; a rule's email per firing and user (two rules
        # may both email someone about one event). NULLS NOT DISTINCT: a disabled-config
        # notice has no firing, and is still sent once.
        sa.UniqueConstraint(
            "notice_event_id",
            "user_id",
            "firing_id",
            name="uq_email_notice_user",
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: str = Field(default_factory=lambda: new_id("eml"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    notice_event_id: str = Field(foreign_key="event.id", max_length=40)
    user_id: str = Field(foreign_key="user.id", max_length=40)
    #: The notification rule's firing that sent it; None for a disabled-config notice.
    firing_id: str | None = Field(default=None, max_length=40)
    to_address: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    status: str = Field(default=EmailStatus.PENDING, max_length=16)
    message_id: str | None = Field(default=None, max_length=200)
    last_error: str | None = Field(default=None, sa_type=Text)
    sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


@registry.register(
    INTERNAL_PROVIDER, "integration.disabled.error", name="notifications.integration"
)
@registry.register(INTERNAL_PROVIDER, "source.disabled", name="notifications.source")
@registry.register(
    INTERNAL_PROVIDER, "webhook_destination.disabled", name="notifications.webhook_destination"
)
def notify_disabled(session: Session, event: InboundEvent) -> None:
    notice, user_ids = _notice(session, event)
    if notice is None or not user_ids:
        return
    users = session.exec(
        select(User)
        .where(User.org_id == event.org_id, col(User.id).in_(user_ids))
        .order_by(col(User.id))
    )
    for user in users:
        already = session.exec(
            select(Email.id).where(
                Email.notice_event_id == event.id,
                Email.user_id == user.id,
                col(Email.firing_id).is_(None),  # a rule's email about it is another email
            )
        ).first()
        if already:
            continue
        queue_email(session, event, user, render_disabled_notice(notice, user.name))


def queue_email(
    session: Session,
    event: InboundEvent,
    user: User,
    rendered: RenderedEmail,
    firing_id: str | None = None,
) -> Email:
    """The email telling ``user`` about ``event``, and its ``email.send`` work item."""
    email = Email(
        org_id=event.org_id,
        notice_event_id=event.id,
        firing_id=firing_id,
        user_id=user.id,
        to_address=user.email,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
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
    return email


def _notice(session: Session, event: InboundEvent) -> tuple[DisabledNotice | None, list[str]]:
    payload = event.payload
    if "config_id" in payload:
        return _config_notice(session, payload)
    if "destination_id" in payload:
        return _destination_notice(session, payload)
    return _source_notice(session, payload)


def _config_notice(
    session: Session, payload: dict[str, Any]
) -> tuple[DisabledNotice | None, list[str]]:
    config = session.get(IntegrationConfig, payload["config_id"])
    if config is None:
        return None, []
    runs = session.exec(
        select(IntegrationRun)
        .where(
            IntegrationRun.config_id == config.id,
            col(IntegrationRun.status).in_([RunStatus.ERROR, RunStatus.AUTH_FAILED]),
        )
        .order_by(col(IntegrationRun.id).desc())
        .limit(RECENT_ERRORS)
    )
    errors = [(run.finished_at, f"{run.error_type}: {run.error_message}") for run in runs]
    notice = DisabledNotice(
        "integration",
        config.id,
        config.name,
        payload["reason"],
        config.disabled_at,
        errors,
        f"meterbridge integrations enable {config.id} --org {config.org_id}",
        f"POST /api/v1/integrations/{config.id}/enable",
    )
    return notice, list(config.disabled_notification_user_ids)


def _source_notice(
    session: Session, payload: dict[str, Any]
) -> tuple[DisabledNotice | None, list[str]]:
    source = session.get(Source, payload["source_id"])
    if source is None:
        return None, []
    dead = session.exec(
        select(Event)
        .where(Event.source_id == source.id, Event.status == EventStatus.DEAD)
        .order_by(col(Event.id).desc())
        .limit(RECENT_ERRORS)
    )
    errors = [(e.dead_at, f"{e.type} {e.id}: {e.last_error}") for e in dead]
    notice = DisabledNotice(
        "source",
        source.id,
        source.name,
        payload["reason"],
        source.disabled_at,
        errors,
        f"meterbridge sources enable {source.id} --org {source.org_id}",
        f"POST /api/v1/sources/{source.id}/enable",
    )
    return notice, list(source.disabled_notification_user_ids)


def _destination_notice(
    session: Session, payload: dict[str, Any]
) -> tuple[DisabledNotice | None, list[str]]:
    destination = session.get(WebhookDestination, payload["destination_id"])
    if destination is None:
        return None, []
    failed = session.exec(
        select(WebhookAttempt)
        .where(
            WebhookAttempt.destination_id == destination.id,
            WebhookAttempt.result != AttemptResult.SUCCEEDED,
        )
        .order_by(col(WebhookAttempt.id).desc())
        .limit(RECENT_ERRORS)
    )
    errors: list[tuple[datetime | None, str]] = [
        (a.attempted_at, f"{a.message_id}: {a.error}") for a in failed
    ]
    notice = DisabledNotice(
        "webhook destination",
        destination.id,
        destination.description or destination.url,
        payload["reason"],
        destination.disabled_at,
        errors,
        f"meterbridge webhook-destinations enable {destination.id} --org {destination.org_id}",
        f"POST /api/v1/webhook-destinations/{destination.id}/enable",
    )
    return notice, list(destination.disabled_notification_user_ids)


def mark_sent(session: Session, email_id: str, message_id: str) -> None:
    email = session.get(Email, email_id)
    if email is not None:
        email.status, email.sent_at, email.message_id = EmailStatus.SENT, utcnow(), message_id
        email.last_error = None
        session.add(email)


@registry.on_failure(INTERNAL_PROVIDER, SEND_EMAIL)
def record_email_failure(
    session: Session, event: InboundEvent, error: BaseException, decision: Decision
) -> None:
    email = session.get(Email, event.payload["email_id"])
    if email is None:
        return
    email.last_error = str(error)[:2000]
    if isinstance(decision, GiveUp):
        email.status = EmailStatus.FAILED
    session.add(email)
