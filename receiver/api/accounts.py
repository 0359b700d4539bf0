from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from domain.accounts import create_account, get_account, list_accounts
from domain.db import transaction
from domain.eventlog import APPENDED
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/accounts", tags=["accounts"])


class Address(Strict):
    line1: str | None = Field(None, max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=100)
    postcode: str | None = Field(None, max_length=20)
    country: str | None = Field(None, max_length=100)


class AccountCreate(Strict):
    code: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    address: Address = Field(default_factory=Address)
    custom_fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AccountPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    email: str | None
    currency: str | None
    address: dict[str, Any]
    custom_fields: dict[str, Any]
    produced_by: list[str] = Field(description="Inbound events that produced or changed it.")
    created_at: datetime


@router.get("", response_model=list[AccountPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    after: Annotated[str, Query(description="An account id: the page after it.")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AccountPublic]:
    accounts = list_accounts(session, org_id, limit=limit, after=after)
    return [AccountPublic.model_validate(account) for account in accounts]


@router.post("", response_model=AccountPublic, status_code=201, responses=answers(409))
def create(body: AccountCreate, org_id: OrgId, intake: IntakeDep) -> AccountPublic:
    """Create an account and log ``account.created``."""
    fields = body.model_dump()
    fields["email"] = str(body.email) if body.email else None
    fields["address"] = body.address.model_dump(exclude_none=True)
    with transaction(intake.engine) as session:
        result = AccountPublic.model_validate(create_account(session, org_id, **fields))
        appended = list(session.info.get(APPENDED, []))  # account.created
    intake.publisher.publish_many(appended)
    return result


@router.get("/{account_id}", response_model=AccountPublic, responses=answers(404))
def show(account_id: str, org_id: OrgId, session: SessionDep) -> AccountPublic:
    return AccountPublic.model_validate(get_account(session, org_id, account_id))
