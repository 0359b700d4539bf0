"""The catalogue events appended where the change is made: each once, with the payload
its catalogue model describes, and nothing more when the same path runs again."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

import domain.subscriptions.handlers  # noqa: F401  (registers the handlers)
import tasks.integration_runs
from domain import routing
from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.catalogue import CATALOGUE
from domain.clock import utcnow
from domain.db import transaction
from domain.errors import Conflict, PermanentError
from domain.eventlog import INTERNAL_PROVIDER, append_internal, inbound_row
from domain.events import Event, EventStatus
from domain.handlers import HandlerRegistry, InboundEvent, registry
from domain.ids import new_id
from domain.integrations.runs import (
    IntegrationRun,
    RunResult,
    RunStatus,
    complete,
    prepare,
    start_runs,
)
from domain.mappings import ExternalMapping
from domain.notifications.emails import SEND_EMAIL
from domain.organisations import Organisation, create_organisation
from domain.processing import Done, Failed, Processor, Skipped, claim, inbound
from domain.providers import provider_for
from domain.retry import GiveUp, RetryPolicy
from domain.secrets import secret_box
from domain.sources import create_source
from domain.subscriptions.projection import AccountPlan
from domain.subscriptions.rebuild import rebuild
from receiver.app import create_app
from tests.domain import factories
from tests.support import handlers
from tests.support import providers as p
from tests.support.environment import Environment

LINE = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def logged(env: Environment, event_type: str, org_id: str | None = None) -> list[Event]:
    """The events of this type in the log, oldest first."""
    with Session(env.engine) as session:
        statement = select(Event).where(Event.type == event_type)
        if org_id is not None:
            statement = statement.where(Event.org_id == org_id)
        return list(session.exec(statement.order_by(col(Event.id))))


def the_one(env: Environment, event_type: str, org_id: str | None = None) -> dict[str, Any]:
    """The payload of the only event of this type, checked against its catalogue entry."""
    events = logged(env, event_type, org_id)
    assert len(events) == 1, [e.payload for e in events]
    assert events[0].provider == INTERNAL_PROVIDER
    payload = json.loads(events[0].payload)
    model = CATALOGUE[event_type].validate(payload)
    assert model.model_dump(mode="json") == payload
    return payload


def new_org(env: Environment) -> str:
    org_id = new_id("org")
    with transaction(env.engine) as session:
        session.add(Organisation(id=org_id, name="test"))
    return org_id


def instant(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# --- account.created -------------------------------------------------------------------------


def test_creating_an_account_logs_account_created_once(env: Environment) -> None:
    org_id = new_org(env)
    with transaction(env.engine) as session:
        account = create_account(
            session,
            org_id,
            code="cus_1",
            name="Initech",
            email="ap@initech.example",
            currency="USD",
            address={"city": "Austin"},
            custom_fields={"tier": "gold"},
        )

    assert the_one(env, "account.created", org_id) == {
        "account_id": account.id,
        "code": "cus_1",
        "name": "Initech",
        "email": "ap@initech.example",
        "currency": "USD",
        "address": {"city": "Austin"},
        "custom_fields": {"tier": "gold"},
    }
    # creating the same code again is refused and logs nothing more
    with pytest.raises(Conflict), transaction(env.engine) as session:
        create_account(session, org_id, code="cus_1", name="Initech again")
    assert len(logged(env, "account.created", org_id)) == 1


def test_the_api_publishes_account_created_after_the_commit(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(env.settings)) as client:
        published = factories.Published(env)
        monkeypatch.setattr(client.app.state.intake.publisher, "publish_many", published)  # type: ignore[attr-defined]
        with transaction(env.engine) as session:
            org, key = create_organisation(session, "api")
        response = client.post(
            "/api/v1/accounts",
            json={"code": "A1", "name": "Acme"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201, response.text
        again = client.post(
            "/api/v1/accounts",
            json={"code": "A1", "name": "Acme"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert again.status_code == 409

    [event] = logged(env, "account.created", org.id)
    assert the_one(env, "account.created", org.id)["account_id"] == response.json()["id"]
    # published once, and only once the event was committed (another connection saw it)
    assert published.pairs == [(event.id, "account.created")]
    assert published.seen == {event.id: EventStatus.PENDING}


# --- account_plan.* and account.created from subscriptions in ------------------------------


class Subscriptions:
    """An organisation with a Chargebee source and plan mappings, fed as a worker is."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.org_id = new_org(env)
        with transaction(env.engine) as session:
            source, _ = create_source(
                session,
                secret_box(env.settings),
                org_id=self.org_id,
                name="cb",
                provider="chargebee",
            )
            self.source_id = source.id
            for external, plan in (("pro-USD", "plan_pro"), ("team-USD", "plan_team")):
                session.add(
                    ExternalMapping(
                        org_id=self.org_id,
                        entity="plan",
                        entity_id=plan,
                        external_system="chargebee",
                        external_table="item_price",
                        external_id=external,
                    )
                )
        self.processor = Processor(env.engine, registry, RetryPolicy(max_attempts=1), 60, 30, 2)

    def receive(self, event: dict[str, Any]) -> tuple[str, Any]:
        envelope = provider_for("chargebee").envelope({}, event)
        row = inbound_row(
            org_id=self.org_id,
            source_id=self.source_id,
            provider="chargebee",
            envelope=envelope,
            body=json.dumps(event).encode(),
            headers={},
            received_at=utcnow(),
            held=False,
        )
        with transaction(self.env.engine) as session:
            session.add(Event(**row))
        return row["id"], self.processor.process(row["id"])

    def plan_events(self) -> list[tuple[str, dict[str, Any]]]:
        with Session(self.env.engine) as session:
            events = session.exec(
                select(Event)
                .where(Event.org_id == self.org_id, col(Event.type).startswith("account_plan."))
                .order_by(col(Event.id))
            )
            return [(event.type, json.loads(event.payload)) for event in events]

    def plan_id(self) -> str:
        with Session(self.env.engine) as session:
            return session.exec(
                select(AccountPlan.id).where(AccountPlan.org_id == self.org_id)
            ).one()


def subscription(kind: str, *, at: int, plan: str = "pro-USD", **kwargs: Any) -> dict[str, Any]:
    return p.chargebee_subscription(kind, "sub_1", "cus_1", plan, at=at, **kwargs)


def test_a_subscription_logs_its_account_and_plan_and_each_real_change(
    env: Environment,
) -> None:
    subs = Subscriptions(env)

    # a new subscription of a new customer: the account, then the plan
    created_by, outcome = subs.receive(subscription("subscription_created", at=p.T0))
    assert isinstance(outcome, Done)
    account = the_one(env, "account.created", subs.org_id)
    assert account | {"account_id": None} == {
        "account_id": None,
        "code": "cus_1",
        "name": "Ada Lovelace",
        "email": "cus_1@example.com",
        "currency": None,
        "address": {},
        "custom_fields": {},
    }
    plan = {
        "account_plan_id": subs.plan_id(),
        "account_id": account["account_id"],
        "plan_id": "plan_pro",
        "provider": "chargebee",
        "external_subscription_id": "sub_1",
        "status": "active",
        "start_at": instant(p.T0),
        "end_at": None,
    }
    assert subs.plan_events() == [("account_plan.created", plan)]
    assert the_one(env, "account_plan.created", subs.org_id) == plan
    # caused by the inbound event, and published by the task that processed it
    [account_event] = logged(env, "account.created", subs.org_id)
    [plan_event] = logged(env, "account_plan.created", subs.org_id)
    assert account_event.caused_by == plan_event.caused_by == created_by
    assert outcome.follow_ups == (
        (account_event.id, "account.created"),
        (plan_event.id, "account_plan.created"),
    )

    # the same subscription again, newer but saying nothing new, and an older one: nothing
    subs.receive(subscription("subscription_changed", at=p.T0 + 5))
    subs.receive(subscription("subscription_changed", at=p.T0 - 5, plan="team-USD"))
    assert len(subs.plan_events()) == 1

    # a change of plan is an update
    subs.receive(subscription("subscription_changed", at=p.T0 + 10, plan="team-USD"))
    updated = {**plan, "plan_id": "plan_team"}
    assert subs.plan_events()[1:] == [("account_plan.updated", updated)]

    # a cancellation gives the plan an end: it ended
    subs.receive(
        subscription(
            "subscription_cancelled",
            at=p.T0 + 20,
            plan="team-USD",
            status="cancelled",
            cancelled_at=p.T0 + 20,
        )
    )
    ended = {**updated, "status": "cancelled", "end_at": instant(p.T0 + 20)}
    assert subs.plan_events()[2:] == [("account_plan.ended", ended)]
    assert the_one(env, "account_plan.ended", subs.org_id) == ended

    # a reactivation clears the end: an update, not a creation
    subs.receive(subscription("subscription_reactivated", at=p.T0 + 30, plan="team-USD"))
    assert subs.plan_events()[3:] == [("account_plan.updated", updated)]

    # still one account and one plan created; a rebuild re-derives them and logs nothing
    with transaction(env.engine) as session:
        rebuild(session, subs.org_id)
    assert len(subs.plan_events()) == 4
    assert len(logged(env, "account_plan.created", subs.org_id)) == 1
    assert len(logged(env, "account.created", subs.org_id)) == 1
    for event_type, payload in subs.plan_events():
        CATALOGUE[event_type].validate(payload)


def test_a_plan_first_seen_cancelled_is_created_and_ended(env: Environment) -> None:
    subs = Subscriptions(env)

    subs.receive(
        subscription(
            "subscription_cancelled", at=p.T0 + 20, status="cancelled", cancelled_at=p.T0 + 20
        )
    )
    # its creation, arriving late, is older: nothing more
    subs.receive(subscription("subscription_created", at=p.T0))

    types = [event_type for event_type, _ in subs.plan_events()]
    assert types == ["account_plan.created", "account_plan.ended"]
    assert the_one(env, "account_plan.ended", subs.org_id)["end_at"] == instant(p.T0 + 20)


def test_an_account_made_for_a_customer_event_is_logged_with_its_details(
    env: Environment,
) -> None:
    subs = Subscriptions(env)

    subs.receive(p.chargebee_customer("cus_1", at=p.T0, name="Initech"))
    subs.receive(p.chargebee_customer("cus_1", at=p.T0 + 1, name="Initrode"))
    subs.receive(subscription("subscription_created", at=p.T0))

    account = the_one(env, "account.created", subs.org_id)
    assert (account["code"], account["name"], account["email"]) == (
        "cus_1",
        "Initech",
        "billing@cus_1.example",
    )


def test_an_existing_account_taken_by_a_subscription_is_not_created_again(
    env: Environment,
) -> None:
    subs = Subscriptions(env)
    with transaction(env.engine) as session:
        create_account(session, subs.org_id, code="cus_1", name="Initech")

    subs.receive(subscription("subscription_created", at=p.T0))

    assert the_one(env, "account.created", subs.org_id)["name"] == "Initech"
    assert len(logged(env, "account_plan.created", subs.org_id)) == 1


# --- integration.run.completed ---------------------------------------------------------------


def a_requested_run(env: Environment) -> tuple[str, str, str]:
    """(organisation, run, its integration.run.requested event) for a Chargebee config."""
    org_id = new_org(env)
    with transaction(env.engine) as session:
        factories.chargebee_config(session, env, org_id)
        account = create_account(session, org_id, code="cus_1", name="Initech")
        session.add(
            ExternalMapping(
                org_id=org_id,
                entity="account",
                entity_id=account.id,
                external_system="chargebee",
                external_table="customer",
                external_id="cus_1",
            )
        )
        _, generated = generate_bill(
            session,
            org_id,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[LineItem.model_validate(LINE)],
        )
        start_runs(session, inbound(generated))
        run = session.exec(select(IntegrationRun).where(IntegrationRun.org_id == org_id)).one()
        assert run.request_event_id is not None
        return org_id, run.id, run.request_event_id


@pytest.fixture
def performing(env: Environment, monkeypatch: pytest.MonkeyPatch) -> Processor:
    """A processor running the real ``integration.run.requested`` handler, whose call to
    the destination is replaced by one that prepares the run and reports a result."""
    box = secret_box(env.settings)

    def perform_run(engine: Any, box_: Any, settings: Any, run_id: str, attempt: int) -> Any:
        with transaction(engine) as session:
            prepared = prepare(session, box_, run_id, attempt)
        assert prepared is not None
        return RunResult("inv_7", 2, 1, prepared.bill_version)

    runtime = SimpleNamespace(engine=env.engine, box=box, settings=env.settings)
    monkeypatch.setattr(tasks.integration_runs, "runtime", lambda: runtime)
    monkeypatch.setattr(tasks.integration_runs, "perform_run", perform_run)
    runs = HandlerRegistry()
    runs.register(
        INTERNAL_PROVIDER,
        "integration.run.requested",
        name="integrations.perform_run",
        isolated=True,
    )(tasks.integration_runs.perform)
    return Processor(env.engine, runs, RetryPolicy(max_attempts=3), 60, 30, 2)


def test_a_completed_run_logs_integration_run_completed_once(
    env: Environment, performing: Processor
) -> None:
    org_id, run_id, request_id = a_requested_run(env)
    [generated] = logged(env, "bill.generated", org_id)

    outcome = performing.process(request_id)

    assert isinstance(outcome, Done)
    with Session(env.engine) as session:
        run = session.get_one(IntegrationRun, run_id)
        assert run.status == RunStatus.COMPLETE
        finished = run.finished_at
        config_id = run.config_id
    assert finished is not None
    payload = the_one(env, "integration.run.completed", org_id)
    assert payload == {
        "run_id": run_id,
        "config_id": config_id,
        "destination": "chargebee",
        "bill_id": json.loads(generated.payload)["bill_id"],
        "bill_version": 1,
        "trigger": "bill.generated",
        "invoice_id": "inv_7",
        "items_added": 2,
        "items_removed": 1,
        "attempts": 1,
        "finished_at": finished.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    [completed] = logged(env, "integration.run.completed", org_id)
    assert completed.caused_by == request_id
    assert outcome.follow_ups == ((completed.id, "integration.run.completed"),)

    # a redelivered message finds the event processed
    assert performing.process(request_id) == Skipped("status processed")
    # an attempt after the outcome was lost finds the handler in the ledger
    with transaction(env.engine) as session:
        session.exec(
            sa.update(Event)
            .where(col(Event.id) == request_id)
            .values(status=EventStatus.RETRYING, next_attempt_at=utcnow())
        )
    assert isinstance(performing.process(request_id), Done)
    # and completing a complete run again changes the record but logs nothing
    with transaction(env.engine) as session:
        complete(
            session, run_id, invoice_id="inv_7", items_added=0, items_removed=0, bill_version=1
        )
    assert len(logged(env, "integration.run.completed", org_id)) == 1


# --- event.dead ------------------------------------------------------------------------------


def processor(env: Environment, handler_registry: HandlerRegistry | None = None) -> Processor:
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, max_attempts=3)
    return Processor(env.engine, handler_registry or handlers.registry, policy, 60, 30, 2)


def dead_of(env: Environment, event_id: str) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in logged(env, "event.dead") if e.caused_by == event_id]


def test_an_event_that_ends_dead_logs_event_dead_once(env: Environment) -> None:
    source_id = factories.source(env)
    event_id = factories.event(env, source_id, "test.permanent", account="acc_9")

    outcome = processor(env).process(event_id)

    assert isinstance(outcome, Failed)
    assert outcome.decision == GiveUp("permanent")
    with Session(env.engine) as session:
        stored = session.get_one(Event, event_id)
        dead_at, last_error = stored.dead_at, stored.last_error
    assert dead_at is not None
    [payload] = dead_of(env, event_id)
    assert CATALOGUE["event.dead"].validate(payload).model_dump(mode="json") == payload
    assert payload == {
        "event_id": event_id,
        "source_id": source_id,
        "provider": "generic",
        "type": "test.permanent",
        "attempts": 1,
        "dead_reason": "permanent",
        "last_error": last_error,
        "dead_at": dead_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    [dead] = [e for e in logged(env, "event.dead") if e.caused_by == event_id]
    assert (dead.org_id, dead.source_id) == ("org_default", None)
    assert outcome.follow_ups == ((dead.id, "event.dead"),)
    # a redelivered message finds it dead: nothing more
    assert processor(env).process(event_id) == Skipped("status dead")
    assert len(dead_of(env, event_id)) == 1


def test_only_the_attempt_that_used_up_the_last_try_logs_event_dead(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "test.crash")
    for attempt in range(3):
        assert dead_of(env, event_id) == [], attempt  # a retry logs nothing
        processor(env).process(event_id)
        with transaction(env.engine) as session:
            session.exec(
                sa.update(Event).where(col(Event.id) == event_id).values(next_attempt_at=utcnow())
            )
    [payload] = dead_of(env, event_id)
    assert (payload["attempts"], payload["dead_reason"]) == (3, "exhausted")


def test_a_stale_attempt_whose_fenced_write_lost_logs_no_event_dead(env: Environment) -> None:
    # given a claim whose lease ran out, and another worker that took the event over
    event_id = factories.event(env, factories.source(env), "test.permanent")
    with transaction(env.engine) as session:
        stale = claim(session, event_id, now=utcnow() - timedelta(seconds=120), lease_seconds=60)
    assert not isinstance(stale, Skipped)
    with transaction(env.engine) as session:
        assert not isinstance(claim(session, event_id, now=utcnow(), lease_seconds=60), Skipped)
    # when the stale attempt records its permanent failure
    processor(env)._fail(stale, PermanentError("late"))
    # then its write is fenced off, and nothing is logged
    assert dead_of(env, event_id) == []


@pytest.mark.parametrize("event_type", sorted({*routing.TASKS_BY_TYPE, "event.dead"}))
def test_no_event_dead_for_event_dead_nor_a_type_with_a_task_of_its_own(
    env: Environment, event_type: str
) -> None:
    failing = HandlerRegistry()

    @failing.register(INTERNAL_PROVIDER, event_type)
    def refuse(session: Session, event: InboundEvent) -> None:
        raise PermanentError("refused")

    with transaction(env.engine) as session:
        event_id = append_internal(
            session, org_id="org_default", type=event_type, payload={"email_id": "eml_1"}
        ).id

    outcome = processor(env, failing).process(event_id)

    assert isinstance(outcome, Failed)
    assert outcome.decision == GiveUp("permanent")
    assert dead_of(env, event_id) == []
    assert outcome.follow_ups == ()


def test_email_send_is_a_type_with_a_task_of_its_own() -> None:
    assert SEND_EMAIL in routing.TASKS_BY_TYPE
