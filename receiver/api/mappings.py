from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from domain.integrations.configs import get_config
from domain.mappings import MappedEntity, create_mapping, get_mapping, list_mappings
from receiver.api.answers import answers
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/external-mappings", tags=["external mappings"])


class MappingCreate(Strict):
    entity: MappedEntity
    entity_id: str = Field(min_length=1, max_length=200)
    external_system: str = Field(min_length=1, max_length=32, examples=["chargebee"])
    external_table: str = Field(min_length=1, max_length=64, examples=["customer", "item_price"])
    external_id: str = Field(min_length=1, max_length=255)
    integration_config_id: str | None = Field(
        None,
        description="Tie the mapping to one config (see enforce_external_mappings_for_config).",
    )


class MappingPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    entity: str
    entity_id: str
    external_system: str
    external_table: str
    external_id: str
    integration_config_id: str | None
    created_at: datetime


@router.get("", response_model=list[MappingPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    entity: MappedEntity | None = None,
    entity_id: str | None = None,
    external_system: str | None = None,
    integration_config_id: str | None = None,
) -> list[MappingPublic]:
    found = list_mappings(
        session,
        org_id,
        entity=entity,
        entity_id=entity_id,
        external_system=external_system,
        integration_config_id=integration_config_id,
    )
    return [MappingPublic.model_validate(mapping) for mapping in found]


@router.post(
    "", response_model=MappingPublic, status_code=201, responses=answers(404, 409)
)
def create(body: MappingCreate, org_id: OrgId, session: SessionDep) -> MappingPublic:
    if body.integration_config_id:
        get_config(session, org_id, body.integration_config_id)
    return MappingPublic.model_validate(create_mapping(session, org_id, **body.model_dump()))


@router.get("/{mapping_id}", response_model=MappingPublic, responses=answers(404))
def show(mapping_id: str, org_id: OrgId, session: SessionDep) -> MappingPublic:
    return MappingPublic.model_validate(get_mapping(session, org_id, mapping_id))


@router.delete("/{mapping_id}", status_code=204, responses=answers(404))
def delete(mapping_id: str, org_id: OrgId, session: SessionDep) -> None:
    session.delete(get_mapping(session, org_id, mapping_id))
