"""Telling people: a config that disabled itself emails the users chosen for it.

The ``integration.disabled.error`` / ``source.disabled`` event is processed like any other:
its handler writes one ``Email`` per chosen user, unique per (notice, user), and appends an
``email.send`` event for each, which the ``meterbridge.send_email`` task delivers with the
spine's retries and backoff. The uniqueness and the ledger make sure nobody gets the same
notice twice, also when a task is redelivered.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, Text, col, select

from domain.clock import utcnow
from domain.eventlog import INTERNAL_PROVIDER, append_internal
from domain.events import Event, EventStatus
from domain.handlers import InboundEvent, registry
from domain.ids import new_id
from domain.integrations.configs import IntegrationConfig
from domain.integrations.runs import IntegrationRun, RunStatus
from domain.retry import Decision, GiveUp
from domain.sources import Source
from domain.users import User

SEND_EMAIL = "email.send"
RECENT_ERRORS = 10


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Email(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("notice_event_id", "user_id", name="uq_email_notice_user"),
    )

    id: str = Field(default_factory=lambda: new_id("eml"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    notice_event_id: str = Field(foreign_key="event.id", max_length=40)
    user_id: str = Field(foreign_key="user.id", max_length=40)
    to_address: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    status: str = Field(default=EmailStatus.PENDING, max_length=16)
    message_id: str | None = Field(default=None, max_length=200)
    last_error: str | None = Field(default=None, sa_type=Text)
    sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class DisabledNotice:
    kind: str  # "integration" or "source"
    config_id: str
    name: str
    reason: str
    disabled_at: datetime | None
    recent_errors: list[tuple[datetime | None, str]]
    enable_cli: str
    enable_api: str


def render(notice: DisabledNotice, user_name: str) -> tuple[str, str, str]:
    """Subject, plain text and HTML of the email."""
    subject = f"meterbridge: {notice.kind} {notice.name!r} was disabled"
    lines = [f"{_when(at)}  {message}" for at, message in notice.recent_errors]
    text = "\n".join(
        [
            f"Hello {user_name},",
            "",
            f"The {notice.kind} {notice.name!r} ({notice.config_id}) was disabled at "
            f"{_when(notice.disabled_at)}: {notice.reason}.",
            "Its work is kept, not sent, until it is enabled again.",
            "",
            "Most recent errors:",
            *(f"  {line}" for line in lines or ["(none recorded)"]),
            "",
            "When the cause is fixed, enable it again; the held work is then released in order:",
            f"  {notice.enable_cli}",
            f"  or {notice.enable_api}",
            "",
            "You receive this because you are on its list of users to notify.",
        ]
    )
    items = (
        "".join(f"<li><code>{html.escape(line)}</code></li>" for line in lines)
        or "<li>(none recorded)</li>"
    )
    body = (
        f"<p>Hello {html.escape(user_name)},</p>"
        f"<p>The {notice.kind} <strong>{html.escape(notice.name)}</strong> "
        f"(<code>{notice.config_id}</code>) was disabled at {_when(notice.disabled_at)}: "
        f"{html.escape(notice.reason)}. Its work is kept, not sent, until it is enabled again.</p>"
        f"<p>Most recent errors:</p><ul>{items}</ul>"
        "<p>When the cause is fixed, enable it again; the held work is then released in order:</p>"
        f"<pre>{html.escape(notice.enable_cli)}\n{html.escape(notice.enable_api)}</pre>"
        "<p>You receive this because you are on its list of users to notify.</p>"
    )
    return subject, text, f"<html><body>{body}</body></html>"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "an unknown time"


@registry.register(
    INTERNAL_PROVIDER, "integration.disabled.error", name="notifications.integration"
)
@registry.register(INTERNAL_PROVIDER, "source.disabled", name="notifications.source")
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
            select(Email.id).where(Email.notice_event_id == event.id, Email.user_id == user.id)
        ).first()
        if already:
            continue
        subject, text, body = render(notice, user.name)
        email = Email(
            org_id=event.org_id,
            notice_event_id=event.id,
            user_id=user.id,
            to_address=user.email,
            subject=subject,
            text_body=text,
            html_body=body,
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


def _notice(session: Session, event: InboundEvent) -> tuple[DisabledNotice | None, list[str]]:
    payload = event.payload
    if "config_id" in payload:
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
