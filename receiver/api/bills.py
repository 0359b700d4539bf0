from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from domain.bills import LineItem, approve_bill, generate_bill, get_bill, list_bills
from domain.db import transaction
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import IsoDate, Strict

router = APIRouter(prefix="/bills", tags=["bills"])


class BillCreate(Strict):
    account_id: str
    period_start: IsoDate
    period_end: IsoDate = Field(description="Exclusive.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    line_items: list[LineItem] = Field(max_length=1000)


class BillPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    period_start: date
    period_end: date
    currency: str
    status: str
    version: int
    line_items: list[dict[str, Any]]
    approved_at: datetime | None
    created_at: datetime
    updated_at: datetime


class BillWithEvent(BillPublic):
    event_id: str | None = Field(description="The bill.generated / bill.approved event logged.")


@router.post("", response_model=BillWithEvent, status_code=201, responses=answers(404, 409))
def generate(body: BillCreate, org_id: OrgId, intake: IntakeDep) -> BillWithEvent:
    """Create the bill for the account and period, or regenerate it (the version goes up).
    Logs ``bill.generated``; an approved bill answers 409."""
    with transaction(intake.engine) as session:
        bill, event = generate_bill(
            session,
            org_id,
            account_id=body.account_id,
            period_start=body.period_start,
            period_end=body.period_end,
            currency=body.currency,
            line_items=body.line_items,
        )
        result = BillWithEvent(**BillPublic.model_validate(bill).model_dump(), event_id=event.id)
    intake.publisher.publish(event.id, event.type)
    return result


@router.post("/{bill_id}/approve", response_model=BillWithEvent, responses=answers(404))
def approve(bill_id: str, org_id: OrgId, intake: IntakeDep) -> BillWithEvent:
    """Approve the bill and log ``bill.approved`` (once: approving again changes nothing)."""
    with transaction(intake.engine) as session:
        bill, event = approve_bill(session, org_id, bill_id)
        result = BillWithEvent(
            **BillPublic.model_validate(bill).model_dump(), event_id=event.id if event else None
        )
    if event is not None:
        intake.publisher.publish(event.id, event.type)
    return result


@router.get("", response_model=list[BillPublic])
def list_(org_id: OrgId, session: SessionDep, account_id: str | None = None) -> list[BillPublic]:
    return [
        BillPublic.model_validate(b) for b in list_bills(session, org_id, account_id=account_id)
    ]


@router.get("/{bill_id}", response_model=BillPublic, responses=answers(404))
def show(bill_id: str, org_id: OrgId, session: SessionDep) -> BillPublic:
    return BillPublic.model_validate(get_bill(session, org_id, bill_id))
