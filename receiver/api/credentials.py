from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from domain.connections.states import STATE_LIFETIME
from domain.integrations.credentials import (
    CredentialStatus,
    create_credential,
    delete_credential,
    get_credential,
    list_credentials,
    update_credential,
)
from domain.secrets import secret_box
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from workers.connections.consent import authorization_url

router = APIRouter(prefix="/credentials", tags=["credentials"])


class CredentialCreate(BaseModel):
    """``name``, ``destination`` and the destination's own credential fields
    (``GET /api/v1/destinations`` lists them as ``credential_schema``: Chargebee's are
    ``api_key`` and ``site``; Xero's and QuickBooks' ``client_id`` and ``client_secret``).
    Secret fields are stored encrypted and never returned."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    name: str = Field(min_length=1, max_length=200)
    destination: str = Field("chargebee", max_length=32)


class CredentialUpdate(BaseModel):
    """A new ``name``, and/or any of the destination's credential fields: those given
    replace the stored ones. New fields start the connection again (its tokens are
    forgotten): it is ``connected`` at once, or ``awaiting_authorization`` for OAuth
    consent. The way to rotate a key, a client secret or a certificate."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    name: str | None = Field(None, min_length=1, max_length=200)


class CredentialPublic(BaseModel):
    """A credential as the API shows it: never its key."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    destination: str
    site: str | None
    options: dict[str, Any]
    status: CredentialStatus = Field(
        description="connected; awaiting_authorization (OAuth: GET …/authorize, then a "
        "person consents); needs_reconnect (the destination refused its refresh token)."
    )
    status_reason: str | None
    tenant_id: str | None = Field(description="The Xero tenant or QuickBooks company reached.")
    connected_at: datetime | None
    created_at: datetime


class Authorization(BaseModel):
    authorization_url: str = Field(
        description="Open it in a browser and consent; the provider then sends the browser "
        "to redirect_uri, and the credential becomes connected. Single use."
    )
    redirect_uri: str = Field(description="Register it as a redirect URI of your app.")
    expires_in_seconds: int


@router.get("", response_model=list[CredentialPublic])
def list_(org_id: OrgId, session: SessionDep) -> list[CredentialPublic]:
    return [CredentialPublic.model_validate(c) for c in list_credentials(session, org_id)]


@router.post("", response_model=CredentialPublic, status_code=201)
def create(
    body: CredentialCreate, org_id: OrgId, session: SessionDep, intake: IntakeDep
) -> CredentialPublic:
    credential = create_credential(
        session,
        secret_box(intake.settings),
        org_id,
        name=body.name,
        destination=body.destination,
        **(body.model_extra or {}),
    )
    return CredentialPublic.model_validate(credential)


@router.get("/{credential_id}", response_model=CredentialPublic, responses=answers(404))
def show(credential_id: str, org_id: OrgId, session: SessionDep) -> CredentialPublic:
    return CredentialPublic.model_validate(get_credential(session, org_id, credential_id))


@router.patch("/{credential_id}", response_model=CredentialPublic, responses=answers(404))
def update(
    credential_id: str,
    body: CredentialUpdate,
    org_id: OrgId,
    session: SessionDep,
    intake: IntakeDep,
) -> CredentialPublic:
    credential = update_credential(
        session,
        secret_box(intake.settings),
        org_id,
        credential_id,
        name=body.name,
        **(body.model_extra or {}),
    )
    return CredentialPublic.model_validate(credential)


@router.get("/{credential_id}/authorize", response_model=Authorization, responses=answers(404, 409))
def authorize(
    credential_id: str, org_id: OrgId, session: SessionDep, intake: IntakeDep
) -> Authorization:
    """A consent link for a credential that connects with OAuth's authorization code
    (Xero, QuickBooks): also to reconnect one that ``needs_reconnect``."""
    settings = intake.settings
    link = authorization_url(session, secret_box(settings), settings, org_id, credential_id)
    return Authorization(
        authorization_url=link.url,
        redirect_uri=link.redirect_uri,
        expires_in_seconds=int(STATE_LIFETIME.total_seconds()),
    )


@router.delete("/{credential_id}", status_code=204, responses=answers(404, 409))
def delete(credential_id: str, org_id: OrgId, session: SessionDep) -> None:
    delete_credential(session, org_id, credential_id)
