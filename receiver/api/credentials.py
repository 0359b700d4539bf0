from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlmodel import select

from domain.errors import Conflict
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import create_credential, get_credential, list_credentials
from domain.secrets import secret_box
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep

router = APIRouter(prefix="/credentials", tags=["credentials"])


class CredentialCreate(BaseModel):
    """``name``, ``destination``, ``api_key`` and the destination's own credential fields
    (``GET /api/v1/destinations`` lists them; Chargebee's is ``site``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    name: str = Field(min_length=1, max_length=200)
    destination: str = Field("chargebee", max_length=32)
    api_key: SecretStr = Field(min_length=1, description="Stored encrypted; never returned.")


class CredentialPublic(BaseModel):
    """A credential as the API shows it: never its key."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    destination: str
    site: str | None
    options: dict[str, Any]
    created_at: datetime


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
        api_key=body.api_key.get_secret_value(),
        **(body.model_extra or {}),
    )
    return CredentialPublic.model_validate(credential)


@router.get("/{credential_id}", response_model=CredentialPublic, responses=answers(404))
def show(credential_id: str, org_id: OrgId, session: SessionDep) -> CredentialPublic:
    return CredentialPublic.model_validate(get_credential(session, org_id, credential_id))


@router.delete("/{credential_id}", status_code=204, responses=answers(404, 409))
def delete(credential_id: str, org_id: OrgId, session: SessionDep) -> None:
    credential = get_credential(session, org_id, credential_id)
    users = session.exec(
        select(IntegrationConfig.id).where(IntegrationConfig.credential_id == credential.id)
    ).all()
    if users:
        raise Conflict(f"credential is attached to {', '.join(users)}: detach it first")
    session.delete(credential)
