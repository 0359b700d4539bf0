"""Credentials for destinations: the fields of the destination's credential model, its
secret fields encrypted at rest (together, as one JSON object) and never shown, the rest
kept as options; and whether the credential can be used now (``status``).

A credential that connects with OAuth's authorization code starts ``awaiting_authorization``
and is ``connected`` once a person has consented (``domain.connections``); one whose refresh
token the destination refuses becomes ``needs_reconnect`` until someone consents again.
Every other credential is ``connected`` from the start.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from domain.clock import utcnow
from domain.connections.states import OAuthState
from domain.connections.tokens import forget_tokens
from domain.destinations.registry import destination as destination_spec
from domain.destinations.registry import invalid_input
from domain.destinations.spec import CredentialFields, Grant
from domain.errors import Conflict
from domain.ids import new_id
from domain.integrations.configs import IntegrationConfig
from domain.scoping import owned
from domain.secrets import SecretBox


class CredentialStatus(StrEnum):
    CONNECTED = "connected"
    AWAITING_AUTHORIZATION = "awaiting_authorization"
    NEEDS_RECONNECT = "needs_reconnect"


class Credential(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("crd"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    destination: str = Field(max_length=32)
    #: The Chargebee site; None for destinations without one.
    site: str | None = Field(default=None, max_length=63)
    #: The public fields of the destination's credential model other than ``site``.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The secret fields, a JSON object, encrypted (``SecretBox``).
    secret_ciphertext: str
    status: str = Field(default=CredentialStatus.CONNECTED, max_length=32)
    #: Why it is not connected: the destination's own words when it refused a token.
    status_reason: str | None = Field(default=None, max_length=1000)
    #: The remote organisation the credential reaches, learnt when it connected: a Xero
    #: tenant, a QuickBooks company (realm).
    tenant_id: str | None = Field(default=None, max_length=100)
    connected_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


def create_credential(
    session: Session,
    box: SecretBox,
    org_id: str,
    /,
    *,
    name: str,
    destination: str,
    **fields: Any,
) -> Credential:
    """Raises ``InvalidInput`` naming the field when the destination's credential model
    refuses the fields."""
    spec = destination_spec(destination)
    credential = Credential(org_id=org_id, name=name, destination=spec.name, secret_ciphertext="")
    _set_fields(credential, box, _checked(spec.credential, fields))
    session.add(credential)
    session.flush()
    return credential


def update_credential(
    session: Session,
    box: SecretBox,
    org_id: str,
    credential_id: str,
    /,
    *,
    name: str | None = None,
    **fields: Any,
) -> Credential:
    """Change the name, or any of the destination's fields (a rotated key, a new
    certificate, a new client secret): the fields given replace the stored ones, the rest
    stay. New fields start the connection again: its tokens are forgotten, and it is
    ``connected`` at once, or ``awaiting_authorization`` for a person's consent."""
    credential = get_credential(session, org_id, credential_id)
    if name is not None:
        credential.name = name
    if fields:
        current = open_credential(box, credential)
        merged = {**current.public(), **current.secrets(), **fields}
        _set_fields(credential, box, _checked(type(current), merged))
        _forget_connection(session, credential.id)
    session.add(credential)
    session.flush()
    return credential


def _checked(model: type[CredentialFields], fields: dict[str, Any]) -> CredentialFields:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def _set_fields(credential: Credential, box: SecretBox, checked: CredentialFields) -> None:
    public = checked.public()
    waits = checked.grant == Grant.AUTHORIZATION_CODE
    credential.site = public.pop("site", None)
    credential.options = public
    credential.secret_ciphertext = box.encrypt(json.dumps(checked.secrets()))
    credential.status = (
        CredentialStatus.AWAITING_AUTHORIZATION if waits else CredentialStatus.CONNECTED
    )
    credential.status_reason = None
    credential.tenant_id = None  # a consent to the new fields names it again
    credential.connected_at = None if waits else utcnow()


def open_credential(box: SecretBox, credential: Credential) -> CredentialFields:
    """The credential's fields, its secrets decrypted: for a run, never for an answer."""
    spec = destination_spec(credential.destination)
    site = {"site": credential.site} if credential.site is not None else {}
    return spec.credential.model_validate(
        {**credential.options, **site, **_secrets(box.decrypt(credential.secret_ciphertext))}
    )


def _secrets(plain: str) -> dict[str, str]:
    # Rows written before migration 0008 hold the bare API key, never a JSON object.
    if plain.startswith("{"):
        return dict(json.loads(plain))
    return {"api_key": plain}


def get_credential(session: Session, org_id: str, credential_id: str) -> Credential:
    return owned(session, Credential, org_id, credential_id, "credential")


def list_credentials(session: Session, org_id: str) -> list[Credential]:
    statement = select(Credential).where(Credential.org_id == org_id)
    return list(session.exec(statement.order_by(col(Credential.id))))


def delete_credential(session: Session, org_id: str, credential_id: str) -> None:
    """With its tokens and consent states. Raises ``Conflict`` while a config uses it."""
    credential = get_credential(session, org_id, credential_id)
    users = session.exec(
        select(IntegrationConfig.id).where(IntegrationConfig.credential_id == credential.id)
    ).all()
    if users:
        raise Conflict(f"credential is attached to {', '.join(users)}: detach it first")
    _forget_connection(session, credential.id)
    session.delete(credential)


def _forget_connection(session: Session, credential_id: str) -> None:
    """Its tokens and its consent links: a link given for the old fields must not connect
    the new ones."""
    forget_tokens(session, credential_id)
    session.exec(sa.delete(OAuthState).where(col(OAuthState.credential_id) == credential_id))
