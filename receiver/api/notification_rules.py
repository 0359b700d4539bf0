from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from domain.notifications.rules import (
    create_rule,
    delete_rule,
    get_rule,
    list_firings,
    list_rules,
    update_rule,
)
from receiver.api.answers import answers
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/notification-rules", tags=["notification rules"])

IdList = list[str]
CALCULATION = (
    "A boolean expression over the event's fields, e.g. "
    '`total >= 5000 AND currency == "USD"`; checked against the event type\'s schema '
    "(GET /api/v1/event-types/{name}). Required unless always_fire."
)


class RuleCreate(Strict):
    code: str = Field(min_length=1, max_length=100, description="Unique in the organisation.")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=1000)
    event_name: str = Field(max_length=200, description="An event type of the catalogue.")
    active: bool = True
    always_fire: bool = Field(False, description="Fire on every event of the type.")
    calculation: str | None = Field(None, max_length=2000, description=CALCULATION)
    webhook_destination_ids: IdList = Field(default_factory=list, max_length=100)
    user_ids: IdList = Field(default_factory=list, max_length=1000, description="Emailed.")
    schedule_cron: str | None = Field(
        None, max_length=100, description="Scheduled events only: when, in UTC (5 fields)."
    )
    schedule_every_seconds: int | None = Field(
        None, ge=60, le=366 * 86400, description="Scheduled events only: how often."
    )


class RuleUpdate(Strict):
    """Fields to change; the rule is checked as a whole again."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=1000)
    active: bool | None = None
    always_fire: bool | None = None
    calculation: str | None = Field(None, max_length=2000, description=CALCULATION)
    webhook_destination_ids: IdList | None = Field(None, max_length=100)
    user_ids: IdList | None = Field(None, max_length=1000)
    schedule_cron: str | None = Field(None, max_length=100)
    schedule_every_seconds: int | None = Field(None, ge=60, le=366 * 86400)


class RulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    description: str
    event_name: str
    active: bool
    always_fire: bool
    calculation: str | None
    webhook_destination_ids: IdList
    user_ids: IdList
    schedule_cron: str | None
    schedule_every_seconds: int | None
    next_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FiringPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    rule_id: str
    event_id: str
    fired: bool
    reason: str
    created_at: datetime


@router.get("", response_model=list[RulePublic])
def list_(org_id: OrgId, session: SessionDep, event_name: str | None = None) -> list[RulePublic]:
    rules = list_rules(session, org_id, event_name=event_name)
    return [RulePublic.model_validate(rule) for rule in rules]


@router.post("", response_model=RulePublic, status_code=201, responses=answers(409))
def create(body: RuleCreate, org_id: OrgId, session: SessionDep) -> RulePublic:
    """Create a rule; a calculation that does not fit the event type's fields is a 422
    naming the position."""
    return RulePublic.model_validate(create_rule(session, org_id, **body.model_dump()))


@router.get("/{rule_id}", response_model=RulePublic, responses=answers(404))
def show(rule_id: str, org_id: OrgId, session: SessionDep) -> RulePublic:
    return RulePublic.model_validate(get_rule(session, org_id, rule_id))


@router.patch("/{rule_id}", response_model=RulePublic, responses=answers(404))
def update(rule_id: str, body: RuleUpdate, org_id: OrgId, session: SessionDep) -> RulePublic:
    changes = body.model_dump(exclude_unset=True)
    return RulePublic.model_validate(update_rule(session, org_id, rule_id, changes))


@router.delete("/{rule_id}", status_code=204, responses=answers(404, 409))
def delete(rule_id: str, org_id: OrgId, session: SessionDep) -> None:
    """A rule that has fired is kept for its history: deactivate it instead (409)."""
    delete_rule(session, org_id, rule_id)


@router.get("/{rule_id}/firings", response_model=list[FiringPublic], responses=answers(404))
def firings(
    rule_id: str,
    org_id: OrgId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FiringPublic]:
    """The rule's verdict on each event of its type, newest first: fired or not, and why."""
    found = list_firings(session, org_id, rule_id, limit=limit)
    return [FiringPublic.model_validate(firing) for firing in found]
