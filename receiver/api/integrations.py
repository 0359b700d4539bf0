from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from domain.accounts import Account
from domain.clock import utcnow
from domain.destinations.registry import check_options
from domain.errors import Conflict, InvalidInput
from domain.integrations.configs import (
    Destination,
    EntityConfig,
    EntityType,
    IntegrationConfig,
    get_config,
    list_configs,
)
from domain.integrations.credentials import Credential
from domain.integrations.enable import enable_and_release
from domain.integrations.runs import (
    IntegrationRun,
    disable_config,
)
from domain.users import check_users
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/integrations", tags=["integrations"])

IdList = list[str]
DESTINATION_OPTIONS = (
    "The destination's own options: GET /api/v1/destinations lists each destination's JSON schema."
)


class IntegrationCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    destination: Destination = Destination.CHARGEBEE
    entity_type: EntityType = EntityType.BILL
    account_ids: IdList = Field(default_factory=list, max_length=10_000)
    restricted_account_ids: IdList = Field(default_factory=list, max_length=10_000)
    disabled_notification_user_ids: IdList = Field(default_factory=list, max_length=1000)
    entity_config: EntityConfig = Field(default_factory=EntityConfig)
    destination_config: dict[str, Any] = Field(
        default_factory=dict, description=DESTINATION_OPTIONS
    )
    credential_id: str | None = Field(None, description="Attach a credential: connected.")


class IntegrationUpdate(Strict):
    """Fields to change; ``credential_id: null`` disconnects."""

    name: str | None = Field(None, min_length=1, max_length=200)
    account_ids: IdList | None = None
    restricted_account_ids: IdList | None = None
    disabled_notification_user_ids: IdList | None = None
    entity_config: EntityConfig | None = None
    destination_config: dict[str, Any] | None = Field(
        None, description="The destination's own options, replaced as a whole."
    )
    credential_id: str | None = None


class IntegrationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    destination: str
    entity_type: str
    account_ids: IdList
    restricted_account_ids: IdList
    disabled_notification_user_ids: IdList
    entity_config: dict[str, Any]
    destination_config: dict[str, Any]
    credential_id: str | None
    connected: bool
    enabled: bool
    consecutive_errors: int
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


def _check_references(
    session: Session, org_id: str, destination: str, values: dict[str, Any]
) -> None:
    """Every id a config names must be one of the organisation's own, and its credential
    one for its destination."""
    for field in ("account_ids", "restricted_account_ids"):
        ids = values.get(field) or []
        if ids:
            found = set(
                session.exec(
                    select(Account.id).where(Account.org_id == org_id, col(Account.id).in_(ids))
                )
            )
            missing = [i for i in ids if i not in found]
            if missing:
                raise InvalidInput(f"unknown account ids: {', '.join(missing)}", field=field)
    check_users(session, org_id, values.get("disabled_notification_user_ids") or [])
    credential_id = values.get("credential_id")
    if credential_id:
        credential = session.get(Credential, credential_id)
        if credential is None or credential.org_id != org_id:
            raise InvalidInput(f"unknown credential {credential_id!r}", field="credential_id")
        if credential.destination != destination:
            raise InvalidInput(
                f"credential {credential_id!r} is for {credential.destination}, not {destination}",
                field="credential_id",
            )


@router.get("", response_model=list[IntegrationPublic])
def list_(org_id: OrgId, session: SessionDep) -> list[IntegrationPublic]:
    return [IntegrationPublic.model_validate(c) for c in list_configs(session, org_id)]


@router.post("", response_model=IntegrationPublic, status_code=201)
def create(body: IntegrationCreate, org_id: OrgId, session: SessionDep) -> IntegrationPublic:
    values = body.model_dump(mode="json")
    values["destination_config"] = check_options(body.destination, values["destination_config"])
    _check_references(session, org_id, body.destination, values)
    config = IntegrationConfig(org_id=org_id, **values)
    session.add(config)
    session.flush()
    return IntegrationPublic.model_validate(config)


@router.get("/{config_id}", response_model=IntegrationPublic, responses=answers(404))
def show(config_id: str, org_id: OrgId, session: SessionDep) -> IntegrationPublic:
    return IntegrationPublic.model_validate(get_config(session, org_id, config_id))


@router.patch("/{config_id}", response_model=IntegrationPublic, responses=answers(404))
def update(
    config_id: str, body: IntegrationUpdate, org_id: OrgId, session: SessionDep
) -> IntegrationPublic:
    config = get_config(session, org_id, config_id)
    values = body.model_dump(mode="json", exclude_unset=True)
    if values.get("name", "") is None:
        raise InvalidInput("name cannot be null", field="name")
    if values.get("destination_config") is not None:
        values["destination_config"] = check_options(
            config.destination, values["destination_config"]
        )
    _check_references(session, org_id, config.destination, values)
    for name, value in values.items():
        if value is None and name != "credential_id":
            value = [] if name.endswith("_ids") else {}
        setattr(config, name, value)
    config.updated_at = utcnow()
    session.add(config)
    session.flush()
    return IntegrationPublic.model_validate(config)


@router.delete("/{config_id}", status_code=204, responses=answers(404, 409))
def delete(config_id: str, org_id: OrgId, session: SessionDep) -> None:
    """Delete a config; its runs stay in the history, so a config with runs is disabled
    instead of deleted."""
    config = get_config(session, org_id, config_id)
    if session.exec(select(IntegrationRun.id).where(IntegrationRun.config_id == config.id)).first():
        raise Conflict("this config has runs: disable it instead (POST .../disable)")
    session.delete(config)


@router.post("/{config_id}/disable", response_model=IntegrationPublic, responses=answers(404))
def disable(config_id: str, org_id: OrgId, session: SessionDep) -> IntegrationPublic:
    """Disable the config: its runs are recorded as DISABLED and held, not sent."""
    config = get_config(session, org_id, config_id)
    disable_config(session, config, "disabled by a user")
    return IntegrationPublic.model_validate(config)


@router.post("/{config_id}/enable", response_model=IntegrationPublic, responses=answers(404))
def enable(config_id: str, org_id: OrgId, intake: IntakeDep) -> IntegrationPublic:
    """Enable the config, reset its error count, and release its held runs in order."""
    enabled = enable_and_release(
        intake.engine,
        lambda session: get_config(session, org_id, config_id),
        intake.publisher.publish_many,
    )
    return IntegrationPublic.model_validate(enabled.config)
