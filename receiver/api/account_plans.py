from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlmodel import col, or_, select

from domain.subscriptions.projection import AccountPlan
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import IsoDate

router = APIRouter(prefix="/account-plans", tags=["account plans"])


class AccountPlanPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    plan_id: str
    provider: str
    external_subscription_id: str
    external_customer_id: str
    external_plan_id: str
    status: str
    start_at: datetime | None
    end_at: datetime | None
    produced_by: list[str]
    created_at: datetime
    updated_at: datetime


@router.get("", response_model=list[AccountPlanPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    account_id: str | None = None,
    active_at: Annotated[
        IsoDate | None,
        Query(description="Only plans active on this day, YYYY-MM-DD (start ≤ day < end)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AccountPlanPublic]:
    """Account plans, each with the events that produced it."""
    statement = select(AccountPlan).where(AccountPlan.org_id == org_id)
    if account_id:
        statement = statement.where(AccountPlan.account_id == account_id)
    if active_at:
        moment = datetime.combine(active_at, time(), UTC)
        statement = statement.where(
            col(AccountPlan.start_at) <= moment,
            or_(col(AccountPlan.end_at).is_(None), col(AccountPlan.end_at) > moment),
        )
    plans = session.exec(statement.order_by(col(AccountPlan.id)).limit(limit))
    return [AccountPlanPublic.model_validate(plan) for plan in plans]
