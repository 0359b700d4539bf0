"""Subscriptions in end to end: webhooks signed as Chargebee, Stripe and Paddle sign them,
through the receiver and a real worker, become accounts and account plans."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session

from domain.db import transaction
from domain.secrets import secret_box
from domain.sources import create_source
from domain.subscriptions.projection import read_state
from tests.support import providers as p
from tests.support.billing import Api
from tests.support.processes import Stack, wait_for

SECRETS = {
    "chargebee": "hooks:correct-horse-battery",
    "stripe": "whsec_e2e_0f9a8b7c6d",
    "paddle": "pdl_ntfset_e2e_secret_key",
}


class Provider:
    def __init__(self, api: Api, running: Stack, name: str) -> None:
        self.api, self.name = api, name
        with transaction(running.env.engine) as session:
            source, _ = create_source(
                session,
                secret_box(running.env.settings),
                org_id=api.org_id,
                name=name,
                provider=name,
                secret=SECRETS[name],
            )
        self.source_id = source.id

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        body = p.body(event)
        headers = {
            "chargebee": lambda: p.chargebee_headers(SECRETS["chargebee"]),
            "stripe": lambda: p.stripe_headers(SECRETS["stripe"], body),
            "paddle": lambda: p.paddle_headers(SECRETS["paddle"], body),
        }[self.name]()
        response = self.api.http.post(f"/webhooks/{self.source_id}", content=body, headers=headers)
        assert response.status_code in (200, 202), response.text
        return response.json()


@pytest.fixture
def api(running: Stack) -> Iterator[Api]:
    client = Api(running.env, running.receiver_url)
    for provider, externals in {
        "chargebee": ("item_price", ["pro-USD", "team-USD"]),
        "stripe": ("price", ["price_pro"]),
        "paddle": ("price", ["pri_pro"]),
    }.items():
        table, ids = externals
        for external in ids:
            client.post(
                "/api/v1/external-mappings",
                {
                    "entity": "plan",
                    "entity_id": "plan_" + external.split("_")[-1].split("-")[0],
                    "external_system": provider,
                    "external_table": table,
                    "external_id": external,
                },
            )
    yield client
    client.http.close()


def settle(api: Api, event_ids: list[str]) -> None:
    for event_id in event_ids:
        api.wait_event(event_id)


def plans_of(api: Api, code: str) -> tuple[dict, list[dict]]:
    [account] = [a for a in api.get("/api/v1/accounts") if a["code"] == code]
    return account, api.get("/api/v1/account-plans", account_id=account["id"])


def test_three_providers_in_any_order_make_the_right_accounts_and_plans(
    api: Api, running: Stack
) -> None:
    chargebee, stripe, paddle = (
        Provider(api, running, name) for name in ("chargebee", "stripe", "paddle")
    )
    t = p.T0
    cb_created = p.chargebee_subscription(
        "subscription_created", "cb_sub", "cb_cus", "pro-USD", at=t
    )
    cb_changed = p.chargebee_subscription(
        "subscription_changed", "cb_sub", "cb_cus", "team-USD", at=t + 10
    )
    cb_cancelled = p.chargebee_subscription(
        "subscription_cancelled",
        "cb_sub",
        "cb_cus",
        "team-USD",
        at=t + 20,
        status="cancelled",
        cancelled_at=t + 20,
    )
    st_customer = p.stripe_customer("cus_st", at=t, name="Globex")
    st_created = p.stripe_subscription(
        "customer.subscription.created", "st_sub", "cus_st", "price_pro", at=t + 1
    )
    st_deleted = p.stripe_subscription(
        "customer.subscription.deleted",
        "st_sub",
        "cus_st",
        "price_pro",
        at=t + 30,
        status="canceled",
        ended_at=t + 30,
    )
    pd_created = p.paddle_subscription(
        "subscription.created", "pd_sub", "ctm_pd", "pri_pro", at=t + 2
    )
    pd_canceled = p.paddle_subscription(
        "subscription.canceled",
        "pd_sub",
        "ctm_pd",
        "pri_pro",
        at=t + 40,
        status="canceled",
        canceled_at=t + 40,
    )

    ids = []
    # cancellations before creations, an old update after a newer one, and repeats
    for provider, event in [
        (chargebee, cb_cancelled),
        (chargebee, cb_created),
        (chargebee, cb_changed),
        (chargebee, cb_cancelled),
        (stripe, st_deleted),
        (stripe, st_created),
        (stripe, st_customer),
        (stripe, st_created),
        (paddle, pd_canceled),
        (paddle, pd_created),
        (paddle, pd_canceled),
    ]:
        answer = provider.send(event)
        ids.append(answer["event_id"])
        assert answer.get("duplicate", False) == (ids.count(answer["event_id"]) > 1)
    settle(api, sorted(set(ids)))

    account, [plan] = plans_of(api, "cb_cus")
    assert (account["name"], account["email"]) == ("Ada Lovelace", "cb_cus@example.com")
    assert (plan["plan_id"], plan["status"], plan["external_plan_id"]) == (
        "plan_team",
        "cancelled",
        "team-USD",
    )
    assert plan["end_at"].startswith("2026-09-21T14:13:40")  # T0 + 20 s
    assert len(plan["produced_by"]) == 3
    account, [plan] = plans_of(api, "cus_st")
    assert (account["name"], plan["plan_id"], plan["status"]) == ("Globex", "plan_pro", "canceled")
    account, [plan] = plans_of(api, "ctm_pd")
    assert (plan["status"], plan["end_at"] is not None) == ("canceled", True)

    # every one of them has ended by the next day
    assert api.get("/api/v1/account-plans", active_at="2026-09-22") == []
    with Session(running.env.engine) as session:
        live = read_state(session, api.org_id)
    rebuilt = subprocess.run(
        [sys.executable, "-m", "workers.cli", "events", "replay", "--rebuild", "--org", api.org_id],
        env=running.env.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 accounts, 3 account plans" in rebuilt.stdout
    with Session(running.env.engine) as session:
        assert read_state(session, api.org_id) == live


def test_a_reactivation_clears_the_end_date(api: Api, running: Stack) -> None:
    chargebee = Provider(api, running, "chargebee")
    t = p.T0 + 1000
    events = [
        p.chargebee_subscription("subscription_created", "cb_re", "cus_re", "pro-USD", at=t),
        p.chargebee_subscription(
            "subscription_cancelled",
            "cb_re",
            "cus_re",
            "pro-USD",
            at=t + 5,
            status="cancelled",
            cancelled_at=t + 5,
        ),
        p.chargebee_subscription(
            "subscription_reactivated", "cb_re", "cus_re", "pro-USD", at=t + 9
        ),
    ]
    settle(api, [chargebee.send(e)["event_id"] for e in reversed(events)])
    account, [plan] = plans_of(api, "cus_re")
    assert (plan["status"], plan["end_at"]) == ("active", None)
    active = api.get("/api/v1/account-plans", account_id=account["id"], active_at="2026-12-01")
    assert [a["id"] for a in active] == [plan["id"]]


def test_an_unmapped_plan_dead_letters_and_replays_once_mapped(api: Api, running: Stack) -> None:
    stripe = Provider(api, running, "stripe")
    event = p.stripe_subscription(
        "customer.subscription.created", "st_new", "cus_new", "price_enterprise", at=p.T0
    )
    event_id = stripe.send(event)["event_id"]
    dead = api.wait_event(event_id)
    assert dead["status"] == "dead"
    assert "price_enterprise" in dead["last_error"]
    errors = api.get("/api/v1/events", type="integration.missingaccountmapping.error")
    assert [e["caused_by"] for e in errors] == [event_id]
    assert [
        a for a in api.get("/api/v1/accounts") if a["code"] == "cus_new"
    ] == []  # nothing half-made

    api.post(
        "/api/v1/external-mappings",
        {
            "entity": "plan",
            "entity_id": "plan_enterprise",
            "external_system": "stripe",
            "external_table": "price",
            "external_id": "price_enterprise",
        },
    )
    replayed = api.post("/api/v1/dead-letters/replay", {"event_ids": [event_id]})
    assert replayed["replayed"] == [event_id]
    wait_for(lambda: api.get(f"/api/v1/events/{event_id}")["status"] == "processed", timeout=30)
    _, [plan] = plans_of(api, "cus_new")
    assert plan["plan_id"] == "plan_enterprise"


def test_unknown_event_types_are_stored_and_ignored(api: Api, running: Stack) -> None:
    paddle = Provider(api, running, "paddle")
    event = {
        "event_id": "evt_unknown_1",
        "event_type": "transaction.completed",
        "occurred_at": p.iso(p.T0),
        "data": {"id": "txn_1"},
    }
    answer = paddle.send(event)
    assert api.wait_event(answer["event_id"])["status"] == "ignored"


def test_a_wrong_signature_is_refused_for_each_provider(api: Api, running: Stack) -> None:
    for name in ("chargebee", "stripe", "paddle"):
        provider = Provider(api, running, name)
        body = p.body({"id": "x", "event_id": "x"})
        wrong = {
            "chargebee": p.chargebee_headers("hooks:wrong-password"),
            "stripe": p.stripe_headers("whsec_not_the_secret", body),
            "paddle": p.paddle_headers("pdl_ntfset_not_the_secret", body),
        }[name]
        response = api.http.post(f"/webhooks/{provider.source_id}", content=body, headers=wrong)
        assert (response.status_code, response.json()["code"]) == (401, "bad_signature")
