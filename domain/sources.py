"""Sources: configured intakes, each with a provider and the secret its webhooks are
signed with. The secret is stored encrypted and shown only once, at creation.

A disabled source's webhooks are stored and held; ``enable_and_release`` (the service the
admin API and the CLI both call) enables it and sends its held events on, in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import JSON, Column, Field, Session, SQLModel, select

from domain.clock import utcnow
from domain.db import transaction
from domain.ids import new_id
from domain.outbox import release_held
from domain.providers import provider_for
from domain.routing import Publish
from domain.scoping import owned
from domain.secrets import SecretBox


class Source(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("src"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    provider: str = Field(max_length=32)
    secret_ciphertext: str
    enabled: bool = True
    consecutive_errors: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    disabled_notification_user_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow)


def create_source(
    session: Session,
    box: SecretBox,
    *,
    org_id: str,
    name: str,
    provider: str,
    secret: str | None = None,
    notify_user_ids: list[str] | None = None,
) -> tuple[Source, str]:
    """Returns the source and its plain secret (generated when not given)."""
    kind = provider_for(provider)
    plain = secret if secret is not None else kind.generate_secret()
    kind.check_secret(plain)
    source = Source(
        org_id=org_id,
        name=name,
        provider=provider,
        secret_ciphertext=box.encrypt(plain),
        disabled_notification_user_ids=notify_user_ids or [],
    )
    session.add(source)
    session.flush()
    return source, plain


def get_source(session: Session, org_id: str, source_id: str) -> Source:
    return owned(session, Source, org_id, source_id, "source")


def list_sources(session: Session, org_id: str) -> list[Source]:
    statement = select(Source).where(Source.org_id == org_id).order_by(Source.id)
    return list(session.exec(statement))


def disable_source(session: Session, source: Source, reason: str) -> None:
    if source.enabled:
        source.enabled = False
        source.disabled_at = utcnow()
        source.disabled_reason = reason
        session.add(source)


def enable_source(session: Session, source: Source) -> None:
    """Enable the source and start its count of successive failures again."""
    source.enabled = True
    source.consecutive_errors = 0
    source.disabled_at = None
    source.disabled_reason = None
    session.add(source)


@dataclass(frozen=True, slots=True)
class SourceEnabled:
    source: Source
    released: list[tuple[str, str]]  # (id, type) of the held events now pending, in order


def enable_and_release(
    engine: Engine,
    find: Callable[[Session], Source],
    publish: Publish,
    *,
    now: datetime,
    grace_seconds: float,
) -> SourceEnabled:
    """Enable the source ``find`` reads (the API finds it in the caller's organisation,
    the CLI in any), start its count of failures again and release its held events, in
    one transaction; then ``publish`` them in the order received (a lost publish is found
    by the sweeper)."""
    with transaction(engine) as session:
        source = find(session)
        enable_source(session, source)
        released = release_held(session, source.id, now, grace_seconds)
    if released:
        publish(released)
    return SourceEnabled(source, released)
