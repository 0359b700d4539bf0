"""Organisations and the API keys that act for them."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Field, Session, SQLModel, select

from domain.clock import utcnow
from domain.errors import NotFound
from domain.ids import new_id

DEFAULT_ORG_ID = "org_default"
API_KEY_PREFIX = "mbk_"


class Organisation(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    hint: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash cannot be brute-forced; no salt needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, org_id: str, name: str) -> tuple[ApiKey, str]:
    """Returns the stored key and the plain key, which is never stored or shown again."""
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(org_id=org_id, name=name, key_hash=hash_api_key(plain), hint=plain[:10])
    session.add(key)
    session.flush()
    return key, plain


def org_for_api_key(session: Session, plain: str) -> str | None:
    key = session.exec(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(plain), ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
    ).first()
    return key.org_id if key else None


def create_organisation(session: Session, name: str) -> tuple[Organisation, str]:
    """A new organisation and its first API key (plain, shown once)."""
    organisation = Organisation(id=new_id("org"), name=name)
    session.add(organisation)
    session.flush()
    _, plain = create_api_key(session, organisation.id, "first key")
    return organisation, plain


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.exec(select(Organisation).order_by(Organisation.id)))


def revoke_api_key(session: Session, org_id: str, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.org_id != org_id:
        raise NotFound(f"no API key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
    return key


def list_api_keys(session: Session, org_id: str) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.id)))
