"""Stripe's performer called directly, on the test database and the fake Stripe, for what
real workers cannot be made to do on cue: a later run (a regeneration) settling an earlier
run's write whose answer was lost. Within one run a retry sends the same keys anyway; across
runs only the ledger's record of the earlier key prevents a second charge."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import fakeredis
import pytest

from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.db import transaction
from domain.errors import TransientError
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import create_credential
from domain.integrations.runs import (
    IntegrationRun,
    RunResult,
    acquire_bill,
    prepare,
    release_bill,
)
from domain.integrations.sync import BillSync
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from tests.support.environment import Environment
from tests.support.fake_stripe import API_KEY, FakeStripe
from workers.destinations.stripe.sync import perform
from workers.ratelimits import RateLimiter

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}
MIN_SPEND = {"type": "MINIMUM_SPEND", "quantity": 1, "unit_price": "10.00", "subtotal": "10.00"}
USAGE = {"type": "USAGE", "quantity": 3, "unit_price": "2.00", "subtotal": "6.00"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe(hang_seconds=2).start()
    yield server
    server.stop()


class Sender:
    """One Stripe config of the default organisation, and what its runs do."""

    def __init__(self, env: Environment, fake: FakeStripe) -> None:
        self.env, self.fake = env, fake
        self.settings = env.settings.model_copy(
            update={"stripe_api_base": fake.url, "http_timeout_seconds": 1.0}
        )
        self.limiter = RateLimiter(fakeredis.FakeRedis())
        self.customer = f"cus_{uuid.uuid4().hex[:10]}"
        with transaction(env.engine) as session:
            credential = create_credential(
                session,
                secret_box(self.settings),
                DEFAULT_ORG_ID,
                name="stripe",
                destination="stripe",
                api_key=API_KEY,
            )
            self.account_id = create_account(
                session, DEFAULT_ORG_ID, code=self.customer, name="Initech"
            ).id
            config = IntegrationConfig(
                org_id=DEFAULT_ORG_ID,
                name="stripe",
                destination="stripe",
                credential_id=credential.id,
            )
            session.add(config)
            session.flush()
            self.config_id = config.id

    def bill(self, *lines: dict[str, Any]) -> str:
        with transaction(self.env.engine) as session:
            bill, _ = generate_bill(
                session,
                DEFAULT_ORG_ID,
                account_id=self.account_id,
                period_start=date(2026, 10, 1),
                period_end=date(2026, 11, 1),
                currency="USD",
                line_items=[LineItem.model_validate(line) for line in lines],
            )
            return bill.id

    def run(self, bill_id: str) -> str:
        with transaction(self.env.engine) as session:
            run = IntegrationRun(
                org_id=DEFAULT_ORG_ID,
                config_id=self.config_id,
                bill_id=bill_id,
                trigger="bill.generated",
                trigger_event_id="evt_test",
            )
            session.add(run)
            session.flush()
            return run.id

    def perform(self, run_id: str) -> RunResult:
        """What the worker does for the run's attempt (``workers.destinations.runner``)."""
        engine = self.env.engine
        with transaction(engine) as session:
            prepared = prepare(session, secret_box(self.settings), run_id, 1)
        assert prepared is not None
        with transaction(engine) as session:
            sync = acquire_bill(session, prepared, 60)
            state = BillSync.model_validate(sync.model_dump())
        try:
            return perform(engine, self.settings, prepared, state, limiter=self.limiter)
        finally:
            with transaction(engine) as session:
                release_bill(session, run_id)

    def posted(self, endpoint: str) -> list[tuple[str | None, int, bool]]:
        """(key, status, replayed) of this customer's calls to ``endpoint``."""
        return [
            (call.key, call.status, call.replayed)
            for call in self.fake.calls_to(endpoint)
            if call.params.get("customer") == self.customer
        ]

    def amounts(self) -> list[int]:
        return sorted(item["amount"] for item in self.fake.items(customer=self.customer))


@pytest.fixture
def sender(env: Environment, fake: FakeStripe) -> Sender:
    return Sender(env, fake)


def test_a_later_run_replays_a_lost_creation_under_its_key_instead_of_making_another(
    sender: Sender, fake: FakeStripe
) -> None:
    # given a run whose invoice was made but whose answer was lost
    bill_id = sender.bill(STANDING)
    first = sender.run(bill_id)
    fake.fail_next(1, "apply_then_hang", endpoint="POST /v1/invoices")
    with pytest.raises(TransientError, match="in time"):
        sender.perform(first)
    [made] = [i for i in fake.invoices.values() if i["customer"] == sender.customer]

    # when the bill is regenerated and its run goes first
    sender.bill(STANDING, USAGE)
    result = sender.perform(sender.run(bill_id))

    # then it finds the invoice by replaying the first run's creation: one invoice only
    assert result.invoice_id == made["id"]
    assert sender.posted("POST /v1/invoices") == [
        (f"{first}:invoice", 200, False),
        (f"{first}:invoice", 200, True),
    ]
    assert sender.amounts() == [600, 4900]
    assert {item["invoice"] for item in fake.items(customer=sender.customer)} == {made["id"]}


def test_a_later_run_sends_a_lost_add_again_under_the_first_runs_key(
    sender: Sender, fake: FakeStripe
) -> None:
    """Sent again under the same key, the add lands once even if the first request is
    still to land at Stripe; a new key would let both land."""
    # given a run whose first item's request went unanswered and did nothing
    bill_id = sender.bill(STANDING, MIN_SPEND)
    first = sender.run(bill_id)
    fake.fail_next(1, "hang", endpoint="POST /v1/invoiceitems")
    with pytest.raises(TransientError, match="in time"):
        sender.perform(first)
    [hung] = sender.posted("POST /v1/invoiceitems")

    # when the bill is regenerated as it was and its run goes
    sender.bill(STANDING, MIN_SPEND)
    second = sender.run(bill_id)
    result = sender.perform(second)

    # then the lost add went again under the first run's key, and the rest under the second's
    posted = sender.posted("POST /v1/invoiceitems")
    assert posted[1] == (hung[0], 200, False)
    assert [key.split(":")[0] for key, _, _ in posted if key] == [first, first, second]
    assert (result.items_added, sender.amounts()) == (1, [1000, 4900])


def test_a_later_run_adopts_a_lost_add_that_landed_without_sending_it_again(
    sender: Sender, fake: FakeStripe
) -> None:
    bill_id = sender.bill(STANDING, MIN_SPEND)
    first = sender.run(bill_id)
    fake.fail_next(1, "apply_then_hang", endpoint="POST /v1/invoiceitems")
    with pytest.raises(TransientError, match="in time"):
        sender.perform(first)

    sender.bill(STANDING, MIN_SPEND)
    result = sender.perform(sender.run(bill_id))

    # one request per item: the landed one was found by its metadata, not sent again
    assert len(sender.posted("POST /v1/invoiceitems")) == 2
    assert (result.items_added, sender.amounts()) == (1, [1000, 4900])
