"""Accounts and Account Plans as projections of inbound events.

``apply_facts`` is what live processing does with one event; ``fold`` is the same rule
over a whole history, without a database. Both keep, per subscription, the facts of the
event with the highest version, so they agree whatever the order and the repeats.

Live processing logs what it changes, caused by the inbound event: ``account.created``
for an account it creates; ``account_plan.created`` for a new plan;
``account_plan.ended`` when a plan gets an end date (``end_at`` goes from none to a
time: the subscription was cancelled, at once or from a later date; a new plan that
already has one logs both); ``account_plan.updated`` for any other change of the plan's
payload (``catalogue.AccountPlanFields``). An event that changes nothing logs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from domain.accounts import Account, log_created
from domain.catalogue import AccountPlanFields
from domain.clock import utcnow
from domain.eventlog import append_internal
from domain.ids import new_id
from domain.integrations.errors import MissingAccountMapping
from domain.mappings import ExternalMapping, MappedEntity, entity_for
from domain.subscriptions.facts import CustomerFact, Facts, SubscriptionFact

PROVIDERS = ("chargebee", "stripe", "paddle")


class AccountPlan(SQLModel, table=True):
    __tablename__ = "account_plan"
    __table_args__ = (
        sa.UniqueConstraint(
            "org_id", "provider", "external_subscription_id", name="uq_account_plan_subscription"
        ),
        sa.Index("ix_account_plan_account", "org_id", "account_id"),
    )

    id: str = Field(default_factory=lambda: new_id("ap"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    account_id: str = Field(foreign_key="account.id", max_length=40)
    plan_id: str = Field(max_length=200)
    provider: str = Field(max_length=32)
    external_subscription_id: str = Field(max_length=255)
    external_customer_id: str = Field(max_length=255)
    external_plan_id: str = Field(max_length=255)
    status: str = Field(max_length=32)
    start_at: datetime | None = None
    end_at: datetime | None = None
    version: str = Field(max_length=80)
    produced_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# --- live: one event at a time, in the database -------------------------------------------


def apply_facts(session: Session, org_id: str, facts: Facts, *, log: bool = True) -> None:
    """``log``: append the events of what changed (live processing); a rebuild, which
    re-derives what was already announced, does not."""
    if facts.customer is not None:
        account, created = ensure_account(
            session, org_id, facts.customer.provider, facts.customer.customer_id
        )
        if facts.customer.name is not None and (
            account.facts_version is None or facts.customer.version > account.facts_version
        ):
            account.name, account.email = facts.customer.name, facts.customer.email
            account.facts_version = facts.customer.version
        _produced(account, facts.event_id)
        session.add(account)
        if created and log:
            log_created(session, account, caused_by=facts.event_id)
    if facts.subscription is not None:
        _apply_subscription(session, org_id, facts.event_id, facts.subscription, log=log)


def _apply_subscription(
    session: Session, org_id: str, event_id: str, fact: SubscriptionFact, *, log: bool
) -> None:
    plan_id = plan_for(session, org_id, fact)
    account, created = ensure_account(session, org_id, fact.provider, fact.customer_id)
    _produced(account, event_id)
    session.add(account)
    if created and log:
        log_created(session, account, caused_by=event_id)
    row = session.exec(
        select(AccountPlan)
        .where(
            AccountPlan.org_id == org_id,
            AccountPlan.provider == fact.provider,
            AccountPlan.external_subscription_id == fact.subscription_id,
        )
        .with_for_update()
    ).first()
    before: AccountPlanFields | None = None
    if row is None:
        row = AccountPlan(org_id=org_id, account_id=account.id, **_plan_values(fact, plan_id))
    else:
        before = plan_fields(row)
        if fact.version > row.version:
            for name, value in _plan_values(fact, plan_id).items():
                setattr(row, name, value)
            row.account_id, row.updated_at = account.id, utcnow()
    _produced(row, event_id)
    session.add(row)
    session.flush()
    if log:
        after = plan_fields(row)
        for event_type in plan_changes(before, after):
            append_internal(
                session,
                org_id=org_id,
                type=event_type,
                payload=after.model_dump(mode="json"),
                caused_by=event_id,
            )


def plan_fields(row: AccountPlan) -> AccountPlanFields:
    """The payload of the ``account_plan.*`` events."""
    return AccountPlanFields(
        account_plan_id=row.id,
        account_id=row.account_id,
        plan_id=row.plan_id,
        provider=row.provider,
        external_subscription_id=row.external_subscription_id,
        status=row.status,
        start_at=row.start_at,
        end_at=row.end_at,
    )


def plan_changes(before: AccountPlanFields | None, after: AccountPlanFields) -> list[str]:
    """The events a write of a plan logs; ``before`` None: the plan is new. Times compare
    as instants, whatever offset the database read them back in."""
    ended = after.end_at is not None and (before is None or before.end_at is None)
    if before is None:
        return ["account_plan.created", *(["account_plan.ended"] if ended else [])]
    if after == before:
        return []
    return ["account_plan.ended" if ended else "account_plan.updated"]


def _plan_values(fact: SubscriptionFact, plan_id: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "provider": fact.provider,
        "external_subscription_id": fact.subscription_id,
        "external_customer_id": fact.customer_id,
        "external_plan_id": fact.plan_external_id,
        "status": fact.status,
        "start_at": fact.start,
        "end_at": fact.end,
        "version": fact.version,
    }


def _produced(row: Account | AccountPlan, event_id: str) -> None:
    if event_id not in row.produced_by:
        row.produced_by = [*row.produced_by, event_id]


def plan_for(session: Session, org_id: str, fact: SubscriptionFact) -> str:
    plan_id = entity_for(
        session,
        org_id,
        entity=MappedEntity.PLAN,
        system=fact.provider,
        table=fact.plan_table,
        external_id=fact.plan_external_id,
    )
    if plan_id is None:
        raise MissingAccountMapping(
            f"no plan is mapped to {fact.provider} {fact.plan_table} {fact.plan_external_id!r} "
            f"(subscription {fact.subscription_id}): add an external mapping, then replay"
        )
    return plan_id


def ensure_account(
    session: Session, org_id: str, provider: str, customer_id: str
) -> tuple[Account, bool]:
    """The account for a provider's customer: through its mapping, else the account with
    that code, else a new one; the mapping is recorded either way. Returns it and whether
    it is new (the caller logs ``account.created`` once the event's fields are set)."""
    account_id = entity_for(
        session,
        org_id,
        entity=MappedEntity.ACCOUNT,
        system=provider,
        table="customer",
        external_id=customer_id,
    )
    account = session.get(Account, account_id) if account_id else None
    if account is not None:
        return account, False
    account = session.exec(
        select(Account).where(Account.org_id == org_id, Account.code == customer_id)
    ).first()
    created = account is None
    if account is None:
        account = Account(org_id=org_id, code=customer_id, name=customer_id)
        session.add(account)
        session.flush()
    session.add(
        ExternalMapping(
            org_id=org_id,
            entity=MappedEntity.ACCOUNT,
            entity_id=account.id,
            external_system=provider,
            external_table="customer",
            external_id=customer_id,
        )
    )
    session.flush()
    return account, created


# --- the same rule over a whole history ------------------------------------------------------


@dataclass
class State:
    """Accounts and plans keyed by the provider's ids, comparable across ways of building."""

    accounts: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    plans: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)


PlanLookup = Callable[[SubscriptionFact], str | None]


def fold(history: Iterable[Facts], plan_lookup: PlanLookup) -> State:
    """Newest wins per customer and per subscription; facts whose plan is unmapped are
    left out, as live processing dead-letters them."""
    customers: dict[tuple[str, str], CustomerFact] = {}
    known: set[tuple[str, str]] = set()
    subscriptions: dict[tuple[str, str], tuple[SubscriptionFact, str]] = {}
    for facts in history:
        subscription = facts.subscription
        plan_id = plan_lookup(subscription) if subscription else None
        if subscription is not None and plan_id is None:
            continue
        if facts.customer is not None:
            key = (facts.customer.provider, facts.customer.customer_id)
            known.add(key)
            stated = facts.customer.name is not None
            if stated and (key not in customers or facts.customer.version > customers[key].version):
                customers[key] = facts.customer
        if subscription is not None and plan_id is not None:
            known.add((subscription.provider, subscription.customer_id))
            key = (subscription.provider, subscription.subscription_id)
            if key not in subscriptions or subscription.version > subscriptions[key][0].version:
                subscriptions[key] = (subscription, plan_id)
    state = State()
    for key in known:
        fact = customers.get(key)
        state.accounts[key] = (fact.name or key[1], fact.email) if fact else (key[1], None)
    for key, (subscription, plan_id) in subscriptions.items():
        state.plans[key] = _plan_tuple(
            subscription.customer_id,
            plan_id,
            subscription.status,
            subscription.start,
            subscription.end,
        )
    return state


def _plan_tuple(customer: str, plan_id: str, status: str, start: Any, end: Any) -> tuple[Any, ...]:
    return (customer, plan_id, status, _instant(start), _instant(end))


def _instant(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def read_state(session: Session, org_id: str) -> State:
    """The projection as stored, in ``fold``'s shape."""
    state = State()
    rows = session.exec(
        select(ExternalMapping, Account)
        .join(Account, col(Account.id) == col(ExternalMapping.entity_id))
        .where(
            ExternalMapping.org_id == org_id,
            ExternalMapping.entity == MappedEntity.ACCOUNT,
            ExternalMapping.external_table == "customer",
            col(ExternalMapping.external_system).in_(PROVIDERS),
        )
    )
    for mapping, account in rows:
        state.accounts[(mapping.external_system, mapping.external_id)] = (
            account.name,
            account.email,
        )
    plans = session.exec(
        select(AccountPlan).where(
            AccountPlan.org_id == org_id, col(AccountPlan.provider).in_(PROVIDERS)
        )
    )
    for plan in plans:
        state.plans[(plan.provider, plan.external_subscription_id)] = _plan_tuple(
            plan.external_customer_id, plan.plan_id, plan.status, plan.start_at, plan.end_at
        )
    return state
