"""``GET /api/v1/destinations``: what bills can be sent to, with the JSON schemas of each
destination's options and credential, so that a client can build its forms."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from domain.destinations.registry import DESTINATIONS
from domain.destinations.spec import DestinationSpec
from receiver.api.deps import OrgId

router = APIRouter(prefix="/destinations", tags=["destinations"])


class DestinationPublic(BaseModel):
    name: str = Field(description="The value of an integration's `destination`.")
    title: str
    sends_before_approval: bool = Field(
        description="False: bills go out on approval only, whatever only_send_on_approval says."
    )
    limits: dict[str, str] = Field(description="Default rate limits; a credential may lower them.")
    concurrency: dict[str, int] = Field(
        description="Default caps on calls at once; a credential may lower them."
    )
    config_schema: dict[str, Any] = Field(description="JSON schema of `destination_config`.")
    credential_schema: dict[str, Any] = Field(
        description="JSON schema of the destination's fields of POST /api/v1/credentials."
    )

    @classmethod
    def of(cls, spec: DestinationSpec) -> DestinationPublic:
        return cls(
            name=spec.name,
            title=spec.title,
            sends_before_approval=spec.sends_before_approval,
            limits=dict(spec.limits),
            concurrency=dict(spec.concurrency),
            config_schema=spec.options.model_json_schema(),
            credential_schema=spec.credential.model_json_schema(),
        )


@router.get("", response_model=list[DestinationPublic])
def list_(_org_id: OrgId) -> list[DestinationPublic]:
    return [DestinationPublic.of(spec) for spec in DESTINATIONS.values()]
