"""Bills out to Stripe end to end: the admin API, real workers, and the fake Stripe, which
counts the invoices and invoice items it really received (``applied``: writes that changed
something, replays excluded)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.billing import Api, api_on, destination_config, external_mapping
from tests.support.environment import make_env
from tests.support.fake_stripe import API_KEY, RESTRICTED_KEY, FakeStripe
from tests.support.processes import Stack

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}
MIN_SPEND = {"type": "MINIMUM_SPEND", "quantity": 1, "unit_price": "10.00", "subtotal": "10.00"}
CREDIT = {"type": "CREDIT_MEMO", "quantity": 1, "unit_price": "-5.00", "subtotal": "-5.00"}


def usage(quantity: int, product: str = "prod-api") -> dict[str, Any]:
    """``quantity`` API calls at 0.02 each."""
    subtotal = f"{quantity * 2 // 100}.{quantity * 2 % 100:02d}"
    return {
        "type": "USAGE",
        "product_id": product,
        "quantity": quantity,
        "unit_price": "0.02",
        "subtotal": subtotal,
    }


def stripe_env(fake: FakeStripe) -> dict[str, str]:
    return {"METERBRIDGE_STRIPE_API_BASE": fake.url, "METERBRIDGE_HTTP_TIMEOUT_SECONDS": "1.5"}


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    server = FakeStripe(hang_seconds=4).start()
    server.price("price_api", unit_amount=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stripe_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe
) -> Iterator[Stack]:
    """Receiver, worker and beat on an environment of their own, the workers talking to the
    fake Stripe."""
    yield from _stack(tmp_path_factory.mktemp("stripe"), fake_stripe, workers=1)


def _stack(
    tmp: Path, fake: FakeStripe, *, workers: int, jitter_margin_seconds: float = 0.1
) -> Generator[Stack, None, None]:
    env = make_env(tmp)
    stack = Stack(env, tmp)
    margin = {"METERBRIDGE_STRIPE_JITTER_MARGIN_SECONDS": str(jitter_margin_seconds)}
    try:
        with stack.side_by_side():
            stack.start_receiver()
            for _ in range(workers):
                stack.start_worker(**stripe_env(fake), **margin)
            stack.start_beat()
        yield stack
    finally:
        stack.close()
        env.close()


@pytest.fixture
def api(stripe_stack: Stack) -> Iterator[Api]:
    yield from api_on(stripe_stack)


def credential(api: Api, api_key: str = API_KEY, **fields: Any) -> dict[str, Any]:
    body = {"name": "stripe", "destination": "stripe", "api_key": api_key, **fields}
    return api.post("/api/v1/credentials", body)


def stripe_config(api: Api, credential_id: str | None = None, **options: Any) -> dict[str, Any]:
    """An integration config sending bills to Stripe (201, or the test fails)."""
    return destination_config(api, "stripe", credential_id or credential(api)["id"], **options)


def summary(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a person checks on the invoice: price ("" for none), quantity, unit amount
    (minor units), amount."""
    return sorted(
        (
            (item["pricing"]["price_details"] or {}).get("price", ""),
            item["quantity"],
            item["pricing"]["unit_amount_decimal"],
            item["amount"],
        )
        for item in items
    )


def outcomes(api: Api, run: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in api.get(f"/api/v1/events/{run['request_event_id']}")["history"]]


# --- invoicing ------------------------------------------------------------------------------


def test_a_bill_becomes_a_draft_invoice_of_its_own(api: Api, fake_stripe: FakeStripe) -> None:
    # given a config that sends invoices, a product mapped to a Stripe price
    account = api.account()
    config = stripe_config(api, collection_method="send_invoice", days_until_due=30)
    external_mapping(api, "product", "prod-api", "stripe", "price", "price_api")
    other = fake_stripe.raise_next_invoice(account["code"], finalize=False)  # not the bill's

    # when a bill is generated
    bill = api.bill(account["id"], [STANDING, usage(1500), CREDIT])
    [run] = api.wait_runs(bill["id"], 1)

    # then it has a draft invoice of its own, holding one item per line
    assert run["status"] == "COMPLETE", run
    assert (run["config_id"], run["items_added"], run["bill_version"]) == (config["id"], 3, 1)
    invoice = fake_stripe.invoice(run["invoice_id"])
    assert run["invoice_id"] != other
    assert (invoice["status"], invoice["customer"], invoice["auto_advance"]) == (
        "draft",
        account["code"],
        False,
    )
    assert (invoice["collection_method"], invoice["days_until_due"]) == ("send_invoice", 30)
    assert invoice["metadata"]["bill_id"] == bill["id"]
    assert invoice["total"] == 4900 + 3000 - 500
    [created] = fake_stripe.applied("create_invoice", customer=account["code"])
    assert created.params["pending_invoice_items_behavior"] == "exclude"
    assert created.key == f"{run['id']}:invoice"
    assert summary(fake_stripe.items(run["invoice_id"])) == [
        ("", 1, "-500", -500),
        ("", 1, "4900", 4900),
        ("price_api", 1500, "2", 3000),
    ]
    adds = fake_stripe.applied("create_invoice_item", invoice_id=run["invoice_id"])
    assert len(adds) == 3
    for add in adds:
        assert add.key == f"{run['id']}:{add.params['metadata']['meterbridge_item']}"
        assert add.params["metadata"]["meterbridge_bill"] == bill["id"]
        assert add.params["period"] == {"start": "1790812800", "end": "1793491199"}
    assert fake_stripe.items(other) == []


def test_a_regenerated_bill_leaves_the_draft_holding_the_latest_version_only(
    api: Api, fake_stripe: FakeStripe
) -> None:
    account = api.account()
    stripe_config(api)
    first = api.bill(account["id"], [STANDING, usage(1500)])
    [run] = api.wait_runs(first["id"], 1)
    invoice = run["invoice_id"]
    first_items = {item["id"] for item in fake_stripe.items(invoice)}

    # when the bill is regenerated with the usage changed and the standing charge kept
    second = api.bill(account["id"], [STANDING, usage(2000)])
    assert (second["id"], second["version"]) == (first["id"], 2)
    runs = api.wait_runs(first["id"], 2)

    # then the same draft holds version 2 exactly: one item removed, one added
    assert [r["status"] for r in runs] == ["COMPLETE", "COMPLETE"]
    assert (runs[1]["invoice_id"], runs[1]["items_added"], runs[1]["items_removed"]) == (
        invoice,
        1,
        1,
    )
    assert summary(fake_stripe.items(invoice)) == [("", 1, "4900", 4900), ("", 2000, "2", 4000)]
    assert len(fake_stripe.applied("create_invoice", customer=account["code"])) == 1
    assert len(fake_stripe.applied("create_invoice_item", invoice_id=invoice)) == 3
    deleted = fake_stripe.applied("delete_invoice_item")
    assert len([call for call in deleted if call.path_params["id"] in first_items]) == 1
    # and approving (without finalize_on_approval) sends nothing: it already holds it
    api.approve(first["id"])
    runs = api.wait_runs(first["id"], 3)
    assert runs[2]["status"] == "COMPLETE", runs[2]
    assert (runs[2]["items_added"], runs[2]["items_removed"]) == (0, 0)
    assert len(fake_stripe.applied("create_invoice_item", invoice_id=invoice)) == 3
    assert fake_stripe.invoice(invoice)["status"] == "draft"
    assert fake_stripe.applied("finalize_invoice", invoice_id=invoice) == []


def test_finalize_on_approval_finalizes_the_draft_when_the_bill_is_approved(
    api: Api, fake_stripe: FakeStripe
) -> None:
    account = api.account()
    stripe_config(api, finalize_on_approval=True)
    bill = api.bill(account["id"], [STANDING, usage(1500)])
    [run] = api.wait_runs(bill["id"], 1)
    invoice = run["invoice_id"]
    assert fake_stripe.invoice(invoice)["status"] == "draft"

    api.approve(bill["id"])
    runs = api.wait_runs(bill["id"], 2)

    assert runs[1]["status"] == "COMPLETE", runs[1]
    assert (runs[1]["invoice_id"], runs[1]["items_added"]) == (invoice, 0)
    assert fake_stripe.invoice(invoice)["status"] == "open"
    [finalized] = fake_stripe.applied("finalize_invoice", invoice_id=invoice)
    assert (finalized.params, finalized.key) == (
        {"auto_advance": "true"},
        f"{runs[1]['id']}:finalize",
    )
    assert len(fake_stripe.applied("create_invoice_item", invoice_id=invoice)) == 2


def test_an_invoice_no_longer_a_draft_is_never_charged_twice(
    api: Api, fake_stripe: FakeStripe
) -> None:
    # given a bill on its draft, which someone then finalizes in Stripe
    account = api.account()
    stripe_config(api)
    bill = api.bill(account["id"], [STANDING, usage(1500)])
    [run] = api.wait_runs(bill["id"], 1)
    invoice = run["invoice_id"]
    fake_stripe.finalize(invoice)

    # a version with the same items finds the invoice already holding them: nothing to do
    api.bill(account["id"], [STANDING, usage(1500)])
    runs = api.wait_runs(bill["id"], 2)
    assert (runs[1]["status"], runs[1]["bill_version"], runs[1]["invoice_id"]) == (
        "COMPLETE",
        2,
        invoice,
    )

    # a changed version cannot go on it: a perform error naming invoice and versions
    api.bill(account["id"], [STANDING, usage(2000)])
    runs = api.wait_runs(bill["id"], 3)
    failed = runs[2]
    assert (failed["status"], failed["error_type"]) == ("ERROR", "integration.perform.error")
    assert invoice in failed["error_message"]
    assert "version 1" in failed["error_message"]
    assert "version 3" in failed["error_message"]
    # never a second charge: nothing was added, removed or created since
    assert len(fake_stripe.applied("create_invoice_item", invoice_id=invoice)) == 2
    assert len(fake_stripe.applied("create_invoice", customer=account["code"])) == 1
    assert summary(fake_stripe.items(invoice)) == [("", 1, "4900", 4900), ("", 1500, "2", 3000)]


# --- subscription invoicing -----------------------------------------------------------------


def test_subscription_invoicing_keeps_the_latest_version_pending_until_stripe_invoices_it(
    api: Api, fake_stripe: FakeStripe
) -> None:
    # given an account mapped to its Stripe subscription
    account = api.account()
    code = account["code"]
    subscription = f"sub_{code}"
    external_mapping(api, "account", account["id"], "stripe", "subscription", subscription)
    stripe_config(api, stripe_mode="subscription_invoicing", use_subscription=True)

    # when a bill goes out, then is regenerated
    bill = api.bill(account["id"], [STANDING, usage(1500)])
    [first] = api.wait_runs(bill["id"], 1)
    assert (first["status"], first["invoice_id"], first["items_added"]) == ("COMPLETE", None, 2)
    pending = fake_stripe.items(customer=code, pending=True)
    assert {item["parent"]["subscription_details"]["subscription"] for item in pending} == {
        subscription
    }
    api.bill(account["id"], [STANDING, usage(2000)])
    runs = api.wait_runs(bill["id"], 2)

    # then only the latest version is pending, and no invoice was made
    assert (runs[1]["status"], runs[1]["items_added"], runs[1]["items_removed"]) == (
        "COMPLETE",
        1,
        1,
    )
    assert summary(fake_stripe.items(customer=code, pending=True)) == [
        ("", 1, "4900", 4900),
        ("", 2000, "2", 4000),
    ]
    assert len(fake_stripe.applied("create_invoice_item", customer=code)) == 3
    assert fake_stripe.applied("create_invoice", customer=code) == []

    # when Stripe invoices them, a version with the same items changes nothing
    raised = fake_stripe.raise_next_invoice(code, subscription)
    api.bill(account["id"], [STANDING, usage(2000)])
    runs = api.wait_runs(bill["id"], 3)
    assert (runs[2]["status"], runs[2]["items_added"], runs[2]["items_removed"]) == (
        "COMPLETE",
        0,
        0,
    )

    # and a changed version ends in a perform error, charging nothing more
    api.bill(account["id"], [STANDING, usage(2500)])
    runs = api.wait_runs(bill["id"], 4)
    assert (runs[3]["status"], runs[3]["error_type"]) == ("ERROR", "integration.perform.error")
    assert raised in runs[3]["error_message"]
    assert "version 3" in runs[3]["error_message"]
    assert "version 4" in runs[3]["error_message"]
    assert len(fake_stripe.applied("create_invoice_item", customer=code)) == 3
    assert fake_stripe.items(customer=code, pending=True) == []
    assert len(fake_stripe.items(raised)) == 2


def test_use_subscription_needs_the_accounts_subscription_mapping(
    api: Api, fake_stripe: FakeStripe
) -> None:
    account = api.account()
    stripe_config(api, stripe_mode="subscription_invoicing", use_subscription=True)
    bill = api.bill(account["id"], [STANDING])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["error_type"]) == (
        "ERROR",
        "integration.missingaccountmapping.error",
    )
    assert "stripe/subscription" in run["error_message"]
    assert fake_stripe.items(customer=account["code"]) == []


# --- failures -------------------------------------------------------------------------------


def test_a_key_stripe_refuses_ends_the_run_auth_failed(api: Api, fake_stripe: FakeStripe) -> None:
    account = api.account()
    wrong = stripe_config(api, credential(api, api_key="sk_test_not_a_key_1234")["id"])
    restricted = stripe_config(api, credential(api, api_key=RESTRICTED_KEY)["id"])
    bill = api.bill(account["id"], [STANDING])
    runs = {run["config_id"]: run for run in api.wait_runs(bill["id"], 2)}
    for config in (wrong, restricted):
        run = runs[config["id"]]
        assert (run["status"], run["error_type"]) == (
            "AUTH_FAILED",
            "integration.authentication.error",
        )
        assert run["attempts"] == 1
    assert "Invalid API Key" in runs[wrong["id"]]["error_message"]
    assert fake_stripe.applied("create_invoice", customer=account["code"]) == []


def test_a_request_stripe_refuses_ends_in_a_perform_error_with_stripes_message(
    api: Api, fake_stripe: FakeStripe
) -> None:
    account = api.account()
    stripe_config(api, default_price_id="price_nope")
    bill = api.bill(account["id"], [STANDING])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["error_type"], run["attempts"]) == (
        "ERROR",
        "integration.perform.error",
        1,
    )
    assert "No such price: 'price_nope'" in run["error_message"]
    assert fake_stripe.applied("create_invoice_item", customer=account["code"]) == []


def test_a_429_holds_the_credential_back_for_its_retry_after_and_is_no_failure(
    api: Api, fake_stripe: FakeStripe
) -> None:
    # Retry-After 3 s, beyond the test retry policy's cap of 1 s: only the push-back of the
    # credential in the shared limiter keeps the next request away that long
    account = api.account()
    stripe_config(api)
    fake_stripe.fail_next(1, "429", retry_after=3, endpoint="POST /v1/invoiceitems")
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)
    assert run["status"] == "COMPLETE", run
    # a 429 is a wait for the turn, not a failure: it used no attempt
    assert run["attempts"] == 1
    history = outcomes(api, run)
    assert history[-1] == "succeeded"
    assert set(history[:-1]) == {"waited"}
    ours = {account["code"], run["invoice_id"]}
    calls = [
        c
        for c in fake_stripe.calls
        if ours & {c.params.get("customer"), c.params.get("invoice"), c.path_params.get("id")}
    ]
    [limited] = [c for c in calls if c.status == 429]
    after = [c.at for c in calls if c.at > limited.at]
    assert after
    assert min(after) - limited.at >= 3 - 0.05
    assert len(fake_stripe.items(run["invoice_id"])) == 2


def test_a_500_then_success(api: Api, fake_stripe: FakeStripe) -> None:
    account = api.account()
    stripe_config(api)
    fake_stripe.fail_next(2, "500", endpoint="POST /v1/invoiceitems")
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)
    assert run["status"] == "COMPLETE", run
    assert (run["attempts"], outcomes(api, run)) == (3, ["retry", "retry", "succeeded"])
    assert summary(fake_stripe.items(run["invoice_id"])) == [
        ("", 1, "1000", 1000),
        ("", 1, "4900", 4900),
    ]
    assert len(fake_stripe.applied("create_invoice_item", invoice_id=run["invoice_id"])) == 2


@pytest.mark.parametrize(
    ("mode", "fault", "endpoint"),
    [
        ("invoicing", "apply_then_hang", "POST /v1/invoices"),
        ("invoicing", "apply_then_hang", "POST /v1/invoiceitems"),
        ("subscription_invoicing", "apply_then_hang", "POST /v1/invoiceitems"),
        ("invoicing", "hang", "POST /v1/invoiceitems"),
    ],
)
def test_a_lost_answer_charges_each_line_once(
    api: Api, fake_stripe: FakeStripe, mode: str, fault: str, endpoint: str
) -> None:
    account = api.account()
    code = account["code"]
    stripe_config(api, stripe_mode=mode)
    fake_stripe.fail_next(1, fault, endpoint=endpoint)
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)
    assert run["status"] == "COMPLETE", run
    assert run["attempts"] == 2
    # each line charged once: two items exist, two were applied, at most one invoice
    items = fake_stripe.items(customer=code)
    assert summary(items) == [("", 1, "1000", 1000), ("", 1, "4900", 4900)]
    assert len(fake_stripe.applied("create_invoice_item", customer=code)) == 2
    assert len(fake_stripe.applied("create_invoice", customer=code)) == int(mode == "invoicing")
    assert {item["invoice"] for item in items} == {run["invoice_id"]}
    posted = [c for c in fake_stripe.calls_to("POST /v1/invoiceitems") if c.key]
    posted = [c for c in posted if c.params.get("customer") == code]
    if fault == "hang":  # nothing was done: sent again under the same key
        assert [c.key for c in posted].count(posted[0].key) == 2
    elif endpoint == "POST /v1/invoiceitems":  # it landed: found by its metadata, not resent
        assert len(posted) == 2
    else:  # the lost creation is replayed under its key
        creations = [c for c in fake_stripe.calls_to(endpoint) if c.params.get("customer") == code]
        assert [(c.key, c.replayed) for c in creations] == [
            (f"{run['id']}:invoice", False),
            (f"{run['id']}:invoice", True),
        ]


@pytest.mark.parametrize("endpoint", ["POST /v1/invoices", "POST /v1/invoiceitems"])
def test_a_500_stripe_keeps_under_the_key_does_not_leave_the_run_stuck(
    api: Api, fake_stripe: FakeStripe, endpoint: str
) -> None:
    """Stripe replays a kept 500 for its key for 24 hours: once the run has made sure the
    failed request left nothing, it sends under a fresh key derived from the old."""
    account = api.account()
    code = account["code"]
    stripe_config(api)
    fake_stripe.fail_next(1, "500_saved", endpoint=endpoint)
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)
    assert run["status"] == "COMPLETE", run
    assert summary(fake_stripe.items(customer=code)) == [
        ("", 1, "1000", 1000),
        ("", 1, "4900", 4900),
    ]
    assert len(fake_stripe.applied("create_invoice_item", customer=code)) == 2
    assert len(fake_stripe.applied("create_invoice", customer=code)) == 1
    calls = [c for c in fake_stripe.calls_to(endpoint) if c.params.get("customer") == code]
    [kept] = [c for c in calls if c.status == 500]
    assert f"{kept.key}#1" in {c.key for c in calls if c.status == 200}


# --- shared rate limits ---------------------------------------------------------------------


def test_twenty_bills_through_two_workers_never_exceed_the_credentials_rate(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """20 bills, one Stripe credential limited to 5 requests a second (per endpoint, as
    Stripe limits), two worker processes: measured on the fake, no second of any endpoint
    holds more than 5 requests, and every run completes without using an attempt to wait.

    The fake counts arrivals, as Stripe does, so the workers' room for jitter is what keeps
    a late request from crowding the next second. This test shares two cores with others
    (pytest-xdist), where a process can be held back far longer than a network would
    delay it, so it gives the room a quarter second."""
    fake = FakeStripe(hang_seconds=4).start()
    stack_gen = _stack(
        tmp_path_factory.mktemp("stripe-load"), fake, workers=2, jitter_margin_seconds=0.25
    )
    stack = next(stack_gen)
    api = Api(stack.env, stack.receiver_url)
    try:
        limited = credential(api, requests_per_second=5)
        config = stripe_config(api, limited["id"])
        accounts = [api.account() for _ in range(20)]
        started = time.monotonic()
        bills = [
            api.bill(account["id"], [STANDING, MIN_SPEND, usage(100 + n)])
            for n, account in enumerate(accounts)
        ]
        runs = [api.wait_runs(bill["id"], 1, timeout=180)[0] for bill in bills]
        elapsed = time.monotonic() - started

        assert {run["status"] for run in runs} == {"COMPLETE"}, runs
        assert all(run["attempts"] == 1 for run in runs)
        assert api.get(f"/api/v1/integrations/{config['id']}")["consecutive_errors"] == 0
        assert len(fake.applied("create_invoice")) == 20
        assert len(fake.applied("create_invoice_item")) == 60
        peaks = {endpoint: fake.peak_rate(endpoint) for endpoint in fake.counts()}
        print(
            f"\npeak requests in any 1 s window: {peaks}; all endpoints together "
            f"{fake.peak_rate()}; {len(fake.calls)} requests in {elapsed:.1f} s"
        )
        items = sorted(call.at for call in fake.calls_to("POST /v1/invoiceitems"))
        tightest = min(items[i + 5] - items[i] for i in range(len(items) - 5))
        print(f"the tightest six item requests span {tightest:.4f} s")
        # slots of 1.25 / 5 s: 5 slot starts span 1 s, so the limit is reached at its edge
        assert peaks["POST /v1/invoiceitems"] >= 4  # the workers went as fast as allowed
        assert max(peaks.values()) <= 5
        waited = sum(outcomes(api, run).count("waited") for run in runs)
        print(f"attempts that waited for their turn: {waited}")
    finally:
        api.http.close()
        stack_gen.close()
        fake.stop()
