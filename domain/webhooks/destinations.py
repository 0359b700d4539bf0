"""Webhook destinations: where notification rules send signed messages.

A destination is a URL, checked against the SSRF policy when it is saved (and again at
every send), and a ``whsec_`` signing secret, encrypted at rest and shown once: when the
destination is created and when the secret is rotated. A rotated secret keeps signing
beside the new one until ``previous_secret_until`` (default 24 h), so a receiver can
switch at its own pace.

A destination counts its successive failed messages (``domain.failures``): the tenth
disables it, as does a 410 answer, and its chosen users are emailed. Messages for a
disabled destination are held; enabling it releases them (``domain.webhooks.messages``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import JSON, Column, Field, Session, SQLModel, Text, col, select

from domain.clock import utcnow
from domain.ids import new_id
from domain.providers.generic import generate_secret
from domain.scoping import owned
from domain.secrets import SecretBox
from domain.users import check_users

#: How long a rotated-out secret keeps signing, unless the rotation says otherwise.
DEFAULT_OVERLAP = timedelta(hours=24)
#: Longest overlap a rotation may ask for.
MAX_OVERLAP = timedelta(days=30)

#: Checks a URL against the SSRF policy (resolving its host) and raises
#: ``WebhookUrlRefused`` / ``AddressRefused`` / ``UnresolvableHost``: the sender's own check.
UrlCheck = Callable[[str], object]


class WebhookDestination(SQLModel, table=True):
    __tablename__ = "webhook_destination"

    id: str = Field(default_factory=lambda: new_id("whd"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=1000)
    disabled_notification_user_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    secret_ciphertext: str = Field(sa_type=Text)
    previous_secret_ciphertext: str | None = Field(default=None, sa_type=Text)
    previous_secret_until: datetime | None = None
    enabled: bool = True
    disabled_at: datetime | None = None
    disabled_reason: str | None = Field(default=None, max_length=500)
    consecutive_errors: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class WithSecret:
    """A destination and its signing secret in clear: answered once, never stored so."""

    destination: WebhookDestination
    secret: str


def create_destination(
    session: Session,
    box: SecretBox,
    org_id: str,
    *,
    url: str,
    description: str,
    user_ids: list[str],
    check_url: UrlCheck,
) -> WithSecret:
    check_url(url)
    check_users(session, org_id, user_ids)
    secret = generate_secret()
    destination = WebhookDestination(
        org_id=org_id,
        url=url,
        description=description,
        disabled_notification_user_ids=user_ids,
        secret_ciphertext=box.encrypt(secret),
    )
    session.add(destination)
    session.flush()
    return WithSecret(destination, secret)


def get_destination(session: Session, org_id: str, destination_id: str) -> WebhookDestination:
    return owned(session, WebhookDestination, org_id, destination_id, "webhook destination")


def list_destinations(session: Session, org_id: str) -> list[WebhookDestination]:
    statement = select(WebhookDestination).where(col(WebhookDestination.org_id) == org_id)
    return list(session.exec(statement.order_by(col(WebhookDestination.id))))


def update_destination(
    session: Session,
    org_id: str,
    destination_id: str,
    *,
    check_url: UrlCheck,
    url: str | None = None,
    description: str | None = None,
    user_ids: list[str] | None = None,
) -> WebhookDestination:
    destination = get_destination(session, org_id, destination_id)
    if url is not None:
        check_url(url)
        destination.url = url
    if description is not None:
        destination.description = description
    if user_ids is not None:
        check_users(session, org_id, user_ids)
        destination.disabled_notification_user_ids = user_ids
    destination.updated_at = utcnow()
    session.add(destination)
    return destination


def rotate_secret(
    session: Session,
    box: SecretBox,
    org_id: str,
    destination_id: str,
    *,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> WithSecret:
    """A new secret signs from now on; the current one keeps signing beside it for
    ``overlap`` (zero: it stops at once). A secret rotated out earlier stops now."""
    destination = get_destination(session, org_id, destination_id)
    secret = generate_secret()
    now = utcnow()
    destination.previous_secret_ciphertext = destination.secret_ciphertext if overlap else None
    destination.previous_secret_until = now + overlap if overlap else None
    destination.secret_ciphertext = box.encrypt(secret)
    destination.updated_at = now
    session.add(destination)
    return WithSecret(destination, secret)


def signing_secrets(box: SecretBox, destination: WebhookDestination, now: datetime) -> list[str]:
    """The secrets a message sent ``now`` is signed with: the current one first."""
    secrets = [box.decrypt(destination.secret_ciphertext)]
    until = destination.previous_secret_until
    if destination.previous_secret_ciphertext and until is not None and until > now:
        secrets.append(box.decrypt(destination.previous_secret_ciphertext))
    return secrets
