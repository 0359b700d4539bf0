"""Every event meterbridge appends today, built by the code that appends it, is described
exactly by its catalogue entry; and the entries marked emitted are the ones appended."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from domain.accounts import create_account
from domain.bills import LineItem, approve_bill, generate_bill
from domain.catalogue import CATALOGUE
from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import INTERNAL_PROVIDER
from domain.events import Event
from domain.expressions import check, evaluate
from domain.failures import count_failure, disable
from domain.integrations.configs import IntegrationConfig
from domain.integrations.errors import (
    AuthenticationFailed,
    ConfigInvalid,
    MissingAccountMapping,
    PerformFailed,
)
from domain.integrations.runs import (
    RUN_REQUESTED,
    IntegrationRun,
    RunStatus,
    complete,
    record_run_failure,
    start_runs,
)
from domain.mappings import ExternalMapping
from domain.notifications.emails import SEND_EMAIL
from domain.notifications.rules import create_rule
from domain.notifications.scheduled import FIGURES, emit_due
from domain.organisations import create_organisation
from domain.processing import Processor, inbound
from domain.retry import GiveUp, RetryPolicy
from domain.secrets import secret_box
from domain.sources import Source
from domain.subscriptions.facts import read
from domain.subscriptions.handlers import record_mapping_error
from domain.subscriptions.projection import apply_facts
from domain.users import create_user
from domain.webhooks.destinations import WebhookDestination, create_destination
from tests.domain import factories
from tests.support import handlers
from tests.support import providers as p
from tests.support.environment import Environment

#: Appended to the log as instructions to a worker, not news: outside the catalogue.
WORK_ITEMS = {RUN_REQUESTED, SEND_EMAIL}

PRICED = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "4990.5", "subtotal": "4990.5"}
USAGE = {"type": "USAGE", "quantity": "3", "unit_price": "3.25", "subtotal": "9.75"}
UNPRICED = {"type": "USAGE", "quantity": "3"}  # the destination's own price applies


def emit_every_event_type(env: Environment) -> str:
    """Drive each code path that appends an internal event; returns the organisation."""
    with transaction(env.engine) as session:
        org_id = create_organisation(session, "Acme")[0].id
        config = factories.chargebee_config(session, env, org_id)
        account = create_account(session, org_id, code="cus_1", name="Initech")
        period = {"period_start": date(2026, 10, 1), "period_end": date(2026, 11, 1)}
        bill, generated = generate_bill(
            session,
            org_id,
            account_id=account.id,
            currency="usd",
            line_items=[LineItem.model_validate(line) for line in (PRICED, USAGE)],
            **period,
        )
        generate_bill(  # another account's bill whose total is not known here
            session,
            org_id,
            account_id=create_account(session, org_id, code="cus_2", name="Hooli").id,
            currency="EUR",
            line_items=[LineItem.model_validate(UNPRICED)],
            **period,
        )
        _, approved = approve_bill(session, org_id, bill.id)
        assert approved is not None
        start_runs(session, inbound(generated))  # integration.run.requested
        sent = session.exec(select(IntegrationRun).where(IntegrationRun.org_id == org_id)).one()
        sent.status, sent.attempts = RunStatus.STARTED, 1  # as prepare() leaves it
        complete(session, sent.id, invoice_id=None, items_added=2, items_removed=0, bill_version=2)
        session.add(
            ExternalMapping(
                org_id=org_id,
                entity="plan",
                entity_id="plan_pro",
                external_system="chargebee",
                external_table="item_price",
                external_id="pro-USD",
            )
        )
        for at, kind, changes in (  # account.created, account_plan.created|updated|ended
            (p.T0, "subscription_created", {}),
            (p.T0 + 10, "subscription_changed", {"status": "in_trial"}),
            (p.T0 + 20, "subscription_cancelled", {"status": "cancelled", "cancelled_at": 1}),
        ):
            payload = p.chargebee_subscription(kind, "sub_1", "cus_9", "pro-USD", at=at, **changes)
            apply_facts(session, org_id, read("chargebee", kind, f"evt_{at}", payload))
        for error in (
            AuthenticationFailed("refused"),
            PerformFailed("no"),
            ConfigInvalid("no price"),
            MissingAccountMapping("no customer"),
        ):
            run = IntegrationRun(
                org_id=org_id,
                config_id=config.id,
                bill_id=bill.id,
                trigger="bill.approved",
                trigger_event_id=approved.id,
            )
            session.add(run)
            session.flush()
            request = Event(
                id=f"evt_req_{run.id}",
                org_id=org_id,
                provider=INTERNAL_PROVIDER,
                type=RUN_REQUESTED,
                received_at=approved.received_at,
                payload=json.dumps({"run_id": run.id}),
            )
            record_run_failure(session, inbound(request), error, GiveUp("permanent"))
        count_failure(session, IntegrationConfig, config.id, now=approved.received_at, threshold=1)
    source_id = factories.source(env)
    subscription = factories.event(env, source_id, "subscription_created")
    with transaction(env.engine) as session:
        stored = session.get(Event, subscription)
        assert stored is not None
        record_mapping_error(
            session, inbound(stored), MissingAccountMapping("no account"), GiveUp("permanent")
        )
        count_failure(session, Source, source_id, now=stored.received_at, threshold=1)
    with transaction(env.engine) as session:  # webhook_destination.disabled
        hook = create_destination(
            session,
            secret_box(env.settings),
            org_id,
            url="https://1.1.1.1/hook",
            description="",
            user_ids=[],
            check_url=lambda _url: None,
        )
        disable(
            session,
            WebhookDestination,
            hook.destination.id,
            reason="the receiver answered 410 Gone",
            now=utcnow(),
        )
    rejected = factories.event(env, factories.source(env), "test.permanent")  # event.dead
    Processor(env.engine, handlers.registry, RetryPolicy(), 60, 30, 2).process(rejected)
    with transaction(env.engine) as session:  # schedule.*: a rule of each, made due
        ops = create_user(session, org_id, "Ops", "ops@example.com")
        for name in FIGURES:
            create_rule(
                session,
                org_id,
                code=name,
                name=name,
                event_name=name,
                always_fire=True,
                user_ids=[ops.id],
                schedule_every_seconds=3600,
            )
    with transaction(env.engine) as session:
        emit_due(session, now=utcnow() + timedelta(hours=2))
    return org_id


def appended(env: Environment) -> list[tuple[str, dict[str, Any]]]:
    with Session(env.engine) as session:
        events = session.exec(
            select(Event).where(Event.provider == INTERNAL_PROVIDER).order_by(col(Event.id))
        )
        return [(event.type, json.loads(event.payload)) for event in events]


def test_each_appended_event_is_exactly_its_catalogue_schema(env: Environment) -> None:
    # given every path that appends an event today
    emit_every_event_type(env)

    # when the payloads are read back from the log
    events = appended(env)

    # then each is in the catalogue and its model reads it and writes it back unchanged
    for event_type, payload in events:
        if event_type in WORK_ITEMS:
            continue
        assert event_type in CATALOGUE, f"{event_type} is appended but not in the catalogue"
        model = CATALOGUE[event_type].validate(payload)
        assert model.model_dump(mode="json", exclude_unset=True) == payload, event_type
    # and the catalogue's emitted entries are those appended, no more and no fewer
    seen = {event_type for event_type, _ in events} - WORK_ITEMS
    assert seen == {name for name, entry in CATALOGUE.items() if entry.emitted}


def test_bill_events_carry_the_total_as_decimal_text_for_rules(env: Environment) -> None:
    emit_every_event_type(env)
    bills = [payload for event_type, payload in appended(env) if event_type.startswith("bill.")]

    totals = {(payload["currency"], payload["total"]) for payload in bills}

    assert totals == {("USD", "5000.25"), ("EUR", None)}  # 4990.5 + 9.75; unknown: null
    rule = check('total >= 5000 AND currency == "USD"', CATALOGUE["bill.approved"].schema)
    assert [evaluate(rule, payload) for payload in bills] == [True, False, True]
    assert Decimal(bills[0]["total"]) == Decimal("5000.25")
