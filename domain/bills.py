"""Bills: an account's charges for a period, regenerated until approved.

Creating a bill for an (account, period) that already has one regenerates it: the line
items are replaced and the version goes up. An approved bill is final. Each generation and
the approval append an event (``bill.generated``, ``bill.approved``) that starts the
integration runs.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import JSON, Column, Session, SQLModel, col, select
from sqlmodel import Field as TableField

from domain.accounts import get_account
from domain.clock import utcnow
from domain.errors import Conflict, InvalidInput, NotFound
from domain.eventlog import append_internal
from domain.events import Event
from domain.ids import new_id
from domain.money import plain
from domain.scoping import add_unique


class LineItemType(StrEnum):
    STANDING_CHARGE = "STANDING_CHARGE"
    USAGE = "USAGE"
    COUNTER_RUNNING_TOTAL_CHARGE = "COUNTER_RUNNING_TOTAL_CHARGE"
    COUNTER_ADJUSTMENT_DEBIT = "COUNTER_ADJUSTMENT_DEBIT"
    COUNTER_ADJUSTMENT_CREDIT = "COUNTER_ADJUSTMENT_CREDIT"
    MINIMUM_SPEND = "MINIMUM_SPEND"
    MINIMUM_SPEND_REFUND = "MINIMUM_SPEND_REFUND"
    CREDIT_DEDUCTION = "CREDIT_DEDUCTION"
    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    CREDIT_MEMO = "CREDIT_MEMO"
    DEBIT_MEMO = "DEBIT_MEMO"
    COMMITMENT_CONSUMED = "COMMITMENT_CONSUMED"
    COMMITMENT_FEE = "COMMITMENT_FEE"
    OVERAGE_SURCHARGE = "OVERAGE_SURCHARGE"
    OVERAGE_USAGE = "OVERAGE_USAGE"
    BALANCE_CONSUMED = "BALANCE_CONSUMED"
    BALANCE_FEE = "BALANCE_FEE"


class BillStatus(StrEnum):
    GENERATED = "generated"
    APPROVED = "approved"


class UsageBand(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lower_limit: Decimal = Field(ge=0)
    upper_limit: Decimal | None = None
    quantity: Decimal = Field(ge=0)
    unit_price: Decimal
    subtotal: Decimal


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: LineItemType
    description: str | None = Field(None, max_length=500)
    product_id: str | None = Field(None, max_length=200)
    aggregation_id: str | None = Field(None, max_length=200)
    quantity: Decimal = Decimal(1)
    units: str | None = Field(None, max_length=50, description="The unit of measure.")
    unit_price: Decimal | None = None
    subtotal: Decimal | None = Field(
        None, description="Omitted: the destination's own price for the item applies."
    )
    service_period_start: date | None = None
    service_period_end: date | None = None
    bands: list[UsageBand] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _bands_add_up(self) -> LineItem:
        if self.bands:
            if (
                self.subtotal is not None
                and sum(band.subtotal for band in self.bands) != self.subtotal
            ):
                raise ValueError("the bands' subtotals must add up to the line's subtotal")
            if sum(band.quantity for band in self.bands) != self.quantity:
                raise ValueError("the bands' quantities must add up to the line's quantity")
        if (
            self.service_period_start
            and self.service_period_end
            and self.service_period_end < self.service_period_start
        ):
            raise ValueError("service_period_end is before service_period_start")
        return self


class Bill(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint(
            "org_id", "account_id", "period_start", "period_end", name="uq_bill_account_period"
        ),
    )

    id: str = TableField(default_factory=lambda: new_id("bill"), primary_key=True, max_length=40)
    org_id: str = TableField(foreign_key="organisation.id", index=True, max_length=40)
    account_id: str = TableField(foreign_key="account.id", index=True, max_length=40)
    period_start: date
    period_end: date
    currency: str = TableField(max_length=3)
    status: str = TableField(default=BillStatus.GENERATED, max_length=16)
    version: int = 1
    line_items: list[dict[str, Any]] = TableField(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    approved_at: datetime | None = None
    created_at: datetime = TableField(default_factory=utcnow)
    updated_at: datetime = TableField(default_factory=utcnow)

    def lines(self) -> list[LineItem]:
        return [LineItem.model_validate(line) for line in self.line_items]


def generate_bill(
    session: Session,
    org_id: str,
    *,
    account_id: str,
    period_start: date,
    period_end: date,
    currency: str,
    line_items: list[LineItem],
) -> tuple[Bill, Event]:
    """Create the bill for this account and period, or regenerate it (version + 1)."""
    if period_end <= period_start:
        raise InvalidInput("period_end must be after period_start", field="period_end")
    get_account(session, org_id, account_id)
    bill = session.exec(
        select(Bill)
        .where(
            Bill.org_id == org_id,
            Bill.account_id == account_id,
            Bill.period_start == period_start,
            Bill.period_end == period_end,
        )
        .with_for_update()
    ).first()
    stored_lines = [line.model_dump(mode="json") for line in line_items]
    if bill is None:
        bill = Bill(
            org_id=org_id,
            account_id=account_id,
            period_start=period_start,
            period_end=period_end,
            currency=currency.upper(),
            line_items=stored_lines,
        )
    elif bill.status == BillStatus.APPROVED:
        raise Conflict(f"bill {bill.id} is approved and can no longer be regenerated")
    else:
        bill.version += 1
        bill.currency = currency.upper()
        bill.line_items = stored_lines
        bill.updated_at = utcnow()
    # Another request may have created this account and period's bill since the read above.
    racing = Conflict("another request generated this account and period's bill: send it again")
    add_unique(session, bill, racing)
    event = append_internal(
        session, org_id=org_id, type="bill.generated", payload=_bill_event(bill)
    )
    return bill, event


def approve_bill(session: Session, org_id: str, bill_id: str) -> tuple[Bill, Event | None]:
    """Approve a bill. Approving it again changes nothing and logs nothing."""
    bill = get_bill(session, org_id, bill_id, for_update=True)
    if bill.status == BillStatus.APPROVED:
        return bill, None
    bill.status = BillStatus.APPROVED
    bill.approved_at = bill.updated_at = utcnow()
    session.add(bill)
    session.flush()
    return bill, append_internal(
        session, org_id=org_id, type="bill.approved", payload=_bill_event(bill)
    )


def bill_total(bill: Bill) -> Decimal | None:
    """The sum of the lines' subtotals; None when a line leaves its price to the
    destination (no subtotal), so the total is not known here."""
    subtotals = [line.subtotal for line in bill.lines()]
    if any(subtotal is None for subtotal in subtotals):
        return None
    return sum((subtotal for subtotal in subtotals if subtotal is not None), Decimal(0))


def _bill_event(bill: Bill) -> dict[str, Any]:
    """The payload of ``bill.generated`` and ``bill.approved`` (``catalogue.BillFields``)."""
    total = bill_total(bill)
    return {
        "bill_id": bill.id,
        "account_id": bill.account_id,
        "version": bill.version,
        "currency": bill.currency,
        "period_start": bill.period_start.isoformat(),
        "period_end": bill.period_end.isoformat(),
        "total": None if total is None else plain(total),
    }


def get_bill(session: Session, org_id: str, bill_id: str, *, for_update: bool = False) -> Bill:
    statement = select(Bill).where(Bill.id == bill_id)
    if for_update:
        statement = statement.with_for_update()
    bill = session.exec(statement).first()
    if bill is None or bill.org_id != org_id:
        raise NotFound(f"no bill {bill_id!r}")
    return bill


def list_bills(
    session: Session, org_id: str, *, account_id: str | None = None, limit: int = 100
) -> list[Bill]:
    statement = select(Bill).where(Bill.org_id == org_id)
    if account_id:
        statement = statement.where(Bill.account_id == account_id)
    return list(session.exec(statement.order_by(col(Bill.id).desc()).limit(limit)))
