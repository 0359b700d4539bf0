"""Rebuilding accounts and account plans from the log (``meterbridge events replay
--rebuild``): re-apply every processed customer and subscription event, in log order, in
one transaction. Newest-wins makes the order irrelevant, so the result is the state live
processing reached, whatever order the events arrived in."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, delete, select

from domain.accounts import Account
from domain.events import Event, EventStatus
from domain.subscriptions.facts import CUSTOMER_EVENTS, SUBSCRIPTION_EVENTS, Facts, read
from domain.subscriptions.projection import PROVIDERS, AccountPlan, apply_facts, read_state

HANDLED_TYPES = sorted(
    {t for types in (*CUSTOMER_EVENTS.values(), *SUBSCRIPTION_EVENTS.values()) for t in types}
)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    accounts: int
    plans: int


def _conditions(org_id: str) -> list[sa.ColumnElement[bool]]:
    return [
        col(Event.org_id) == org_id,
        col(Event.provider).in_(PROVIDERS),
        col(Event.type).in_(HANDLED_TYPES),
        col(Event.status) == EventStatus.PROCESSED,
    ]


def count_events(session: Session, org_id: str) -> int:
    statement = select(sa.func.count()).select_from(Event).where(*_conditions(org_id))
    return int(session.exec(statement).one())


def history(session: Session, org_id: str, chunk: int = 1000) -> Iterator[Facts]:
    """The processed events' facts in log order, read in chunks to keep memory flat."""
    after = ""
    while True:
        rows = session.exec(
            select(Event.id, Event.provider, Event.type, Event.payload)
            .where(*_conditions(org_id), col(Event.id) > after)
            .order_by(col(Event.id))
            .limit(chunk)
        ).all()
        if not rows:
            return
        for event_id, provider, event_type, payload in rows:
            yield read(provider, event_type, event_id, json.loads(payload))
        after = rows[-1][0]


def rebuild(
    session: Session, org_id: str, on_event: Callable[[], None] = lambda: None
) -> RebuildReport:
    """Call inside one transaction. Account plans are emptied and re-applied; accounts are
    kept (bills refer to them), their event-given fields forgotten and re-applied. Logs no
    ``account.*`` / ``account_plan.*`` events: it re-derives what live processing logged."""
    session.exec(
        delete(AccountPlan).where(
            col(AccountPlan.org_id) == org_id, col(AccountPlan.provider).in_(PROVIDERS)
        )
    )
    for account in session.exec(select(Account).where(Account.org_id == org_id)):
        if account.facts_version is not None or account.produced_by:
            account.facts_version, account.produced_by = None, []
            session.add(account)
    session.flush()
    events = 0
    for facts in history(session, org_id):
        apply_facts(session, org_id, facts, log=False)
        events += 1
        on_event()
    state = read_state(session, org_id)
    return RebuildReport(events, len(state.accounts), len(state.plans))
