from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlmodel import select

from domain.errors import Conflict
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import create_credential, get_credential, list_credentials
from domain.secrets import secret_box
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/credentials", tags=["credentials"])


class CredentialCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    destination: Literal["chargebee"] = "chargebee"
    site: str = Field(
        min_length=1, max_length=63, description="The Chargebee site, e.g. acme-test."
    )
    api_key: SecretStr = Field(description="Stored encrypted; never returned.")


class CredentialPublic(BaseModel):
    """A credential as the API shows it: never its key."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    destination: str
    site: str
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
        site=body.site,
        api_key=body.api_key.get_secret_value(),
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
