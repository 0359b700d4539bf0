"""Credentials for destinations, their secret part encrypted at rest and never shown."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Field, Session, SQLModel, col, select

from domain.clock import utcnow
from domain.errors import InvalidInput
from domain.ids import new_id
from domain.scoping import owned
from domain.secrets import SecretBox

SITE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Credential(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("crd"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    destination: str = Field(max_length=32)
    site: str = Field(max_length=63)
    api_key_ciphertext: str
    created_at: datetime = Field(default_factory=utcnow)


def create_credential(
    session: Session,
    box: SecretBox,
    org_id: str,
    *,
    name: str,
    destination: str,
    site: str,
    api_key: str,
) -> Credential:
    if not SITE.match(site):
        raise InvalidInput("site must be the Chargebee site name: lower-case letters, digits, '-'")
    credential = Credential(
        org_id=org_id,
        name=name,
        destination=destination,
        site=site,
        api_key_ciphertext=box.encrypt(api_key),
    )
    session.add(credential)
    session.flush()
    return credential


def get_credential(session: Session, org_id: str, credential_id: str) -> Credential:
    return owned(session, Credential, org_id, credential_id, "credential")


def list_credentials(session: Session, org_id: str) -> list[Credential]:
    statement = select(Credential).where(Credential.org_id == org_id)
    return list(session.exec(statement.order_by(col(Credential.id))))
