"""Credentials for destinations: the fields of the destination's credential model, its
secret part (``api_key``) encrypted at rest and never shown, the rest kept as options."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from domain.clock import utcnow
from domain.destinations.registry import destination as destination_spec
from domain.destinations.registry import invalid_input
from domain.destinations.spec import CredentialFields
from domain.ids import new_id
from domain.scoping import owned
from domain.secrets import SecretBox


class Credential(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("crd"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    destination: str = Field(max_length=32)
    #: The Chargebee site; None for destinations without one.
    site: str | None = Field(default=None, max_length=63)
    #: The public fields of the destination's credential model other than ``site``.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    api_key_ciphertext: str
    created_at: datetime = Field(default_factory=utcnow)


def create_credential(
    session: Session,
    box: SecretBox,
    org_id: str,
    /,
    *,
    name: str,
    destination: str,
    api_key: str,
    **fields: Any,
) -> Credential:
    """Raises ``InvalidInput`` naming the field when the destination's credential model
    refuses the fields."""
    spec = destination_spec(destination)
    try:
        checked = spec.credential.model_validate({**fields, "api_key": api_key})
    except ValidationError as exc:
        raise invalid_input(exc) from None
    public = checked.public()
    credential = Credential(
        org_id=org_id,
        name=name,
        destination=spec.name,
        site=public.pop("site", None),
        options=public,
        api_key_ciphertext=box.encrypt(api_key),
    )
    session.add(credential)
    session.flush()
    return credential


def open_credential(box: SecretBox, credential: Credential) -> CredentialFields:
    """The credential's fields, its key decrypted: for a run, never for an answer."""
    spec = destination_spec(credential.destination)
    site = {"site": credential.site} if credential.site is not None else {}
    return spec.credential.model_validate(
        {**credential.options, **site, "api_key": box.decrypt(credential.api_key_ciphertext)}
    )


def get_credential(session: Session, org_id: str, credential_id: str) -> Credential:
    return owned(session, Credential, org_id, credential_id, "credential")


def list_credentials(session: Session, org_id: str) -> list[Credential]:
    statement = select(Credential).where(Credential.org_id == org_id)
    return list(session.exec(statement.order_by(col(Credential.id))))
