"""Accounts: the platform's end customers, which bills belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from domain.catalogue import AccountFields
from domain.clock import utcnow
from domain.errors import Conflict
from domain.eventlog import append_internal
from domain.events import Event
from domain.ids import new_id
from domain.scoping import add_unique, owned


class Account(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("org_id", "code", name="uq_account_org_code"),)

    id: str = Field(default_factory=lambda: new_id("acc"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    code: str = Field(max_length=200)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    currency: str | None = Field(default=None, max_length=3)
    address: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    custom_fields: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    #: Inbound events that stated something about this account, in the order applied.
    produced_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: Version of the newest customer event applied (see domain.subscriptions.facts).
    facts_version: str | None = Field(default=None, max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


ACCOUNT_CREATED = "account.created"


def create_account(session: Session, org_id: str, **fields: Any) -> Account:
    """A new account; its ``code`` is unique in the organisation (else ``Conflict``, also
    when another request creates the same code at the same moment). Logs
    ``account.created``: a caller outside a worker publishes it after the commit (the
    session's ``eventlog.APPENDED``)."""
    code = fields["code"]
    duplicate = Conflict(f"an account with code {code!r} already exists")
    if session.exec(select(Account).where(Account.org_id == org_id, Account.code == code)).first():
        raise duplicate
    account = Account(org_id=org_id, **fields)
    add_unique(session, account, duplicate)
    log_created(session, account)
    return account


def log_created(session: Session, account: Account, *, caused_by: str | None = None) -> Event:
    """Append ``account.created`` for a new account, as its fields now stand; call once,
    in the transaction that adds it."""
    payload = AccountFields(
        account_id=account.id,
        code=account.code,
        name=account.name,
        email=account.email,
        currency=account.currency,
        address=account.address or {},
        custom_fields=account.custom_fields or {},
    )
    return append_internal(
        session,
        org_id=account.org_id,
        type=ACCOUNT_CREATED,
        payload=payload.model_dump(mode="json"),
        caused_by=caused_by,
    )


def get_account(session: Session, org_id: str, account_id: str) -> Account:
    return owned(session, Account, org_id, account_id, "account")


def list_accounts(
    session: Session, org_id: str, *, limit: int = 100, after: str = ""
) -> list[Account]:
    statement = (
        select(Account)
        .where(Account.org_id == org_id, col(Account.id) > after)
        .order_by(col(Account.id))
        .limit(limit)
    )
    return list(session.exec(statement))


def filter_view(account: Account) -> dict[str, Any]:
    """The account as the account filter expression sees it."""
    return {
        "id": account.id,
        "code": account.code,
        "name": account.name,
        "email": account.email,
        "currency": account.currency,
        "address": account.address or {},
        "custom_fields": account.custom_fields or {},
    }
