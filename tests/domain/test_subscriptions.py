"""Subscriptions in, in-process on the test database: each provider's facts, and the
projection converging whatever the order and the repeats."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

import domain.subscriptions.handlers  # noqa: F401  (registers the handlers)
from domain.accounts import Account, create_account
from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import inbound_row
from domain.events import Event
from domain.handlers import registry
from domain.ids import new_id
from domain.mappings import ExternalMapping
from domain.organisations import Organisation
from domain.processing import Processor
from domain.providers import provider_for
from domain.retry import RetryPolicy
from domain.secrets import secret_box
from domain.sources import create_source
from domain.subscriptions.facts import SubscriptionFact, read
from domain.subscriptions.projection import State, fold, read_state
from domain.subscriptions.rebuild import history, rebuild
from tests.support import providers as p
from tests.support.environment import Environment

PLANS = {
    "chargebee": ("item_price", ["pro-USD", "team-USD", "unmapped-USD"]),
    "stripe": ("price", ["price_pro", "price_team", "price_unmapped"]),
    "paddle": ("price", ["pri_pro", "pri_team", "pri_unmapped"]),
}


def mapped_plan(provider: str, external_id: str) -> str | None:
    return None if "unmapped" in external_id else f"plan_{external_id.split('_')[-1].split('-')[0]}"


# --- facts -----------------------------------------------------------------------------------


def facts(provider: str, event: dict[str, Any]) -> SubscriptionFact:
    kind = event.get("event_type") or event.get("type")
    fact = read(provider, kind, "evt", event).subscription
    assert fact is not None
    return fact


def test_chargebee_end_dates_follow_cancellation_and_reactivation() -> None:
    cancelled = facts(
        "chargebee",
        p.chargebee_subscription(
            "subscription_cancelled",
            "sub_1",
            "cus_1",
            "pro-USD",
            at=p.T0 + 50,
            status="cancelled",
            cancelled_at=p.T0 + 40,
        ),
    )
    assert (cancelled.status, cancelled.end.timestamp(), cancelled.plan_table) == (
        "cancelled",
        p.T0 + 40,
        "item_price",
    )
    term = facts(
        "chargebee",
        p.chargebee_subscription(
            "subscription_changed",
            "sub_1",
            "cus_1",
            "pro-USD",
            at=p.T0 + 60,
            status="non_renewing",
            term_end=p.T0 + 900,
        ),
    )
    assert term.end.timestamp() == p.T0 + 900
    back = facts(
        "chargebee",
        p.chargebee_subscription(
            "subscription_reactivated", "sub_1", "cus_1", "pro-USD", at=p.T0 + 70
        ),
    )
    assert (back.end, back.start.timestamp()) == (None, p.T0)
    assert back.version > term.version > cancelled.version


def test_stripe_and_paddle_end_dates() -> None:
    ended = facts(
        "stripe",
        p.stripe_subscription(
            "customer.subscription.deleted",
            "sub_1",
            "cus_1",
            "price_pro",
            at=p.T0 + 5,
            status="canceled",
            ended_at=p.T0 + 5,
        ),
    )
    scheduled = facts(
        "stripe",
        p.stripe_subscription(
            "customer.subscription.updated",
            "sub_1",
            "cus_1",
            "price_pro",
            at=p.T0 + 4,
            cancel_at=p.T0 + 99,
        ),
    )
    assert (ended.end.timestamp(), scheduled.end.timestamp()) == (p.T0 + 5, p.T0 + 99)
    canceled = facts(
        "paddle",
        p.paddle_subscription(
            "subscription.canceled",
            "sub_1",
            "ctm_1",
            "pri_pro",
            at=p.T0 + 8,
            status="canceled",
            canceled_at=p.T0 + 7,
        ),
    )
    pending = facts(
        "paddle",
        p.paddle_subscription(
            "subscription.updated",
            "sub_1",
            "ctm_1",
            "pri_pro",
            at=p.T0 + 6,
            cancel_scheduled_at=p.T0 + 30,
        ),
    )
    assert (canceled.end.timestamp(), pending.end.timestamp()) == (p.T0 + 7, p.T0 + 30)


def test_a_time_out_of_any_calendar_is_an_error_naming_it() -> None:
    # a ValueError is what the handler turns into a permanent failure (a dead letter)
    for field, value in (("start_date", 10**20), ("ended_at", -(10**18))):
        event = p.stripe_subscription(
            "customer.subscription.created", "sub_1", "cus_1", "price_pro", at=p.T0
        )
        event["data"]["object"][field] = value
        with pytest.raises(ValueError, match="time out of range"):
            read("stripe", "customer.subscription.created", "evt", event)


def test_an_event_missing_what_it_needs_is_an_error_naming_the_field() -> None:
    event = p.stripe_subscription(
        "customer.subscription.created", "sub_1", "cus_1", "price_pro", at=p.T0
    )
    event["data"]["object"]["items"]["data"] = []
    with pytest.raises(ValueError, match="no price"):
        read("stripe", "customer.subscription.created", "evt", event)


# --- convergence -----------------------------------------------------------------------------


class Org:
    """A fresh organisation with a source per provider and the plan mappings."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.id = new_id("org")
        self.sources: dict[str, str] = {}
        with transaction(env.engine) as session:
            session.add(Organisation(id=self.id, name="test"))
            session.flush()
            for provider, (table, externals) in PLANS.items():
                source, _ = create_source(
                    session,
                    secret_box(env.settings),
                    org_id=self.id,
                    name=provider,
                    provider=provider,
                )
                self.sources[provider] = source.id
                for external in externals:
                    if plan := mapped_plan(provider, external):
                        session.add(
                            ExternalMapping(
                                org_id=self.id,
                                entity="plan",
                                entity_id=plan,
                                external_system=provider,
                                external_table=table,
                                external_id=external,
                            )
                        )
        self.processor = Processor(env.engine, registry, RetryPolicy(max_attempts=1), 60, 30, 2)

    def receive(self, provider: str, event: dict[str, Any]) -> None:
        """Intake then processing, as the receiver and a worker do it."""
        envelope = provider_for(provider).envelope({}, event)
        row = inbound_row(
            org_id=self.id,
            source_id=self.sources[provider],
            provider=provider,
            envelope=envelope,
            body=json.dumps(event).encode(),
            headers={},
            received_at=utcnow(),
            held=False,
        )
        try:
            with transaction(self.env.engine) as session:
                session.add(Event(**row))
        except IntegrityError:
            return  # a repeat of the same provider event id: stored once, processed once
        self.processor.process(row["id"])

    def state(self) -> State:
        with Session(self.env.engine) as session:
            return read_state(session, self.id)

    def folded(self) -> State:
        with Session(self.env.engine) as session:
            return fold(
                history(session, self.id),
                lambda fact: mapped_plan(fact.provider, fact.plan_external_id),
            )


STEPS = {
    "chargebee": [
        ("subscription_created", "active"),
        ("subscription_changed", "active"),
        ("subscription_cancelled", "cancelled"),
        ("subscription_reactivated", "active"),
    ],
    "stripe": [
        ("customer.subscription.created", "active"),
        ("customer.subscription.updated", "active"),
        ("customer.subscription.deleted", "canceled"),
    ],
    "paddle": [
        ("subscription.created", "active"),
        ("subscription.updated", "active"),
        ("subscription.canceled", "canceled"),
    ],
}


def lifecycle(
    provider: str, sub: str, customer: str, steps: list[tuple[int, int]], base: int
) -> list[dict]:
    events = []
    for n, (step, plan_index) in enumerate(steps):
        kind, status = STEPS[provider][step]
        plan = PLANS[provider][1][plan_index]
        at = base + n * 10
        ending = status in ("cancelled", "canceled")
        if provider == "chargebee":
            events.append(
                p.chargebee_subscription(
                    kind,
                    sub,
                    customer,
                    plan,
                    at=at,
                    status=status,
                    cancelled_at=at if ending else None,
                )
            )
        elif provider == "stripe":
            events.append(
                p.stripe_subscription(
                    kind, sub, customer, plan, at=at, status=status, ended_at=at if ending else None
                )
            )
        else:
            events.append(
                p.paddle_subscription(
                    kind,
                    sub,
                    customer,
                    plan,
                    at=at,
                    status=status,
                    canceled_at=at if ending else None,
                )
            )
    return events


subscription_plans = st.lists(
    st.tuples(
        st.sampled_from(sorted(STEPS)),
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=4),
        st.integers(0, 2),  # which customer
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plans=subscription_plans,
    seed=st.integers(),
    repeats=st.integers(0, 5),
    customers=st.booleans(),
    bare=st.booleans(),
)
def test_live_processing_a_rebuild_and_a_fold_agree(
    env: Environment, plans: list, seed: int, repeats: int, customers: bool, bare: bool
) -> None:
    org = Org(env)
    rng = random.Random(seed)
    events: list[tuple[str, dict]] = []
    for index, (provider, steps, customer_index) in enumerate(plans):
        steps = [(step % len(STEPS[provider]), plan) for step, plan in steps]
        customer = f"{provider[:2]}_cus_{customer_index}"
        lives = lifecycle(provider, f"sub_{index}", customer, steps, p.T0 + index)
        if bare and provider == "chargebee":  # customers named by their id alone
            for event in lives:
                event["content"]["customer"] = {"id": customer}
        events += [(provider, e) for e in lives]
        if customers and provider in ("chargebee", "stripe"):
            maker = p.chargebee_customer if provider == "chargebee" else p.stripe_customer
            # before, between or after the subscription's events, which may name the
            # customer by its id alone
            at = p.T0 + rng.randint(-20, 100)
            events.append((provider, maker(customer, at=at, name=f"Co {index}")))
    arrivals = events + [rng.choice(events) for _ in range(repeats)]
    rng.shuffle(arrivals)

    for provider, event in arrivals:
        org.receive(provider, event)

    live = org.state()
    assert live == org.folded()
    with transaction(env.engine) as session:
        rebuild(session, org.id)
    assert org.state() == live


def test_a_customer_named_by_its_id_alone_keeps_the_accounts_name_and_email(
    env: Environment,
) -> None:
    # given an account made through the API, whose code is the Chargebee customer id
    org = Org(env)
    with transaction(env.engine) as session:
        account = create_account(
            session, org.id, code="cus_1", name="Initech", email="ap@initech.example"
        )
    # when a subscription arrives whose customer object carries only the id
    org.receive(
        "chargebee",
        p.chargebee_subscription(
            "subscription_created", "sub_1", "cus_1", "pro-USD", at=p.T0, customer_details=False
        ),
    )
    # then the subscription is the account's, and its name and email are untouched
    with Session(env.engine) as session:
        stored = session.get(Account, account.id)
        assert stored is not None
        assert (stored.name, stored.email) == ("Initech", "ap@initech.example")
        assert stored.produced_by
    # while a customer object that states details still updates them
    org.receive("chargebee", p.chargebee_customer("cus_1", at=p.T0 + 10, name="Initrode"))
    with Session(env.engine) as session:
        assert session.get(Account, account.id).name == "Initrode"  # type: ignore[union-attr]


def test_a_fold_keeps_stated_details_over_a_newer_fact_naming_the_customer_by_id() -> None:
    stated = read(
        "chargebee", "customer_created", "ev_1", p.chargebee_customer("cus_1", at=p.T0)
    )
    bare = read(
        "chargebee",
        "subscription_created",
        "ev_2",
        p.chargebee_subscription(
            "subscription_created", "sub_1", "cus_1", "pro-USD", at=p.T0 + 50,
            customer_details=False,
        ),
    )  # fmt: skip
    for history_ in ([stated, bare], [bare, stated]):
        state = fold(history_, lambda _fact: "plan_pro")
        assert state.accounts[("chargebee", "cus_1")] == ("Initech", "billing@cus_1.example")


def test_reversed_delivery_ends_where_ordered_delivery_does(env: Environment) -> None:
    ordered, reversed_ = Org(env), Org(env)
    history_ = lifecycle("chargebee", "sub_r", "cus_r", [(0, 0), (1, 1), (2, 1)], p.T0)
    for event in history_:
        ordered.receive("chargebee", event)
    for event in reversed(history_):
        reversed_.receive("chargebee", {**event, "id": f"ev_{uuid.uuid4().hex[:8]}"})
    assert ordered.state() == reversed_.state()
    [(_, plan)] = ordered.state().plans.items()
    assert (plan[1], plan[2], plan[4]) == ("plan_team", "cancelled", float(p.T0 + 20))
