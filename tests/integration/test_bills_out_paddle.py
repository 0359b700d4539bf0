"""Bills out to Paddle end to end: the admin API, a real worker, and the fake Paddle,
checking what Paddle holds (its charges, transactions and next bill) and what the run
record and the events say."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.billing import Api, replay_approval
from tests.support.environment import make_env
from tests.support.fake_paddle import API_KEY, Charge, FakePaddle
from tests.support.processes import Stack, wait_for

IMMEDIATELY, NEXT_PERIOD = "immediately", "next_billing_period"
MODES = (IMMEDIATELY, NEXT_PERIOD)

PLATFORM = {
    "type": "STANDING_CHARGE",
    "quantity": 1,
    "unit_price": "49.00",
    "subtotal": "49.00",
    "description": "Platform fee",
}
API_CALLS = {
    "type": "USAGE",
    "product_id": "prod-api",
    "quantity": 1500,
    "unit_price": "0.02",
    "subtotal": "30.00",
}
STORAGE = {
    "type": "USAGE",
    "quantity": "2.5",
    "unit_price": "3",
    "subtotal": "7.51",
    "description": "Storage GB",
}


@pytest.fixture(scope="module")
def fake_paddle() -> Iterator[FakePaddle]:
    server = FakePaddle(hang_seconds=3).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paddle_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_paddle: FakePaddle
) -> Iterator[Stack]:
    """Receiver, worker and beat of their own, the worker talking to the fake Paddle (live
    and sandbox), its answers given up after 1.5 s (the fake hangs for 3)."""
    env = make_env(tmp_path_factory.mktemp("paddle"))
    processes = Stack(env, tmp_path_factory.mktemp("paddle-logs"))
    try:
        with processes.side_by_side():
            processes.start_receiver()
            processes.start_worker(
                METERBRIDGE_PADDLE_API_BASE=fake_paddle.url,
                METERBRIDGE_PADDLE_SANDBOX_API_BASE=fake_paddle.url,
                METERBRIDGE_HTTP_TIMEOUT_SECONDS="1.5",
            )
            processes.start_beat()
        yield processes
    finally:
        processes.close()
        env.close()


@pytest.fixture
def api(paddle_stack: Stack) -> Iterator[Api]:
    client = Api(paddle_stack.env, paddle_stack.receiver_url)
    yield client
    client.http.close()


def credential(api: Api, api_key: str = API_KEY, **fields: Any) -> dict[str, Any]:
    body = {"name": "paddle", "destination": "paddle", "api_key": api_key, "environment": "sandbox"}
    return api.post("/api/v1/credentials", {**body, **fields})


def config(
    api: Api, fake: FakePaddle, credential_id: str | None = None, **options: Any
) -> dict[str, Any]:
    body = {
        "name": "paddle",
        "destination": "paddle",
        "credential_id": credential_id or credential(api)["id"],
        "destination_config": {"default_product_id": fake.usage_product, **options},
    }
    return api.post("/api/v1/integrations", body)


def customer(api: Api, fake: FakePaddle) -> tuple[dict[str, Any], str]:
    """An account and the Paddle subscription it is mapped to."""
    account = api.account()
    subscription = fake.subscription(currency="USD")
    api.post(
        "/api/v1/external-mappings",
        {
            "entity": "account",
            "entity_id": account["id"],
            "external_system": "paddle",
            "external_table": "subscription",
            "external_id": subscription,
        },
    )
    return account, subscription


def map_product(api: Api, product: str, price: str) -> None:
    api.post(
        "/api/v1/external-mappings",
        {
            "entity": "product",
            "entity_id": product,
            "external_system": "paddle",
            "external_table": "price",
            "external_id": price,
        },
    )


def summary(charge: Charge) -> list[tuple[Any, ...]]:
    """What a person checks on a charge: product, unit amount, quantity, price name."""
    return sorted(
        (
            item["price"]["product_id"],
            int(item["price"]["unit_price"]["amount"]),
            item["quantity"],
            item["price"]["name"],
        )
        for item in charge.items
    )


def history(api: Api, run: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in api.get(f"/api/v1/events/{run['request_event_id']}")["history"]]


@pytest.mark.parametrize("mode", MODES)
def test_an_approved_bill_becomes_one_charge_on_the_subscription(
    api: Api, fake_paddle: FakePaddle, mode: str
) -> None:
    # given a customer mapped to a subscription, a product mapped to a catalog price
    account, subscription = customer(api, fake_paddle)
    catalog = fake_paddle.price(amount=2, description="API calls (catalog)")
    map_product(api, "prod-api", catalog)
    paddle_config = config(api, fake_paddle, effective_from=mode)
    assert paddle_config["destination"] == "paddle"

    # when the bill is generated, nothing goes to Paddle
    bill = api.bill(account["id"], [PLATFORM, API_CALLS, STORAGE])
    api.wait_event(bill["event_id"])
    assert api.runs(bill_id=bill["id"]) == []
    assert fake_paddle.charges(subscription) == []

    # when it is approved
    approved = api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)

    # then one charge holds every line, each a price that names its bill and line
    assert run["status"] == "COMPLETE", run
    assert (run["trigger_event_id"], run["invoice_id"], run["items_added"]) == (
        approved["event_id"],
        subscription,
        3,
    )
    [charge] = fake_paddle.charges(subscription)
    assert charge.effective_from == mode
    assert summary(charge) == sorted(
        [
            (fake_paddle.usage_product, 4900, 1, "Platform fee"),
            (fake_paddle.usage_product, 2, 1500, "API calls (catalog)"),  # the catalog's copy
            (fake_paddle.usage_product, 751, 1, "Storage GB"),
        ]
    )
    assert {item["price"]["type"] for item in charge.items} == {"custom"}
    assert sorted(item["price"]["custom_data"]["meterbridge_item"] for item in charge.items) == [
        "1",
        "2",
        "3",
    ]
    assert all(
        item["price"]["custom_data"]["meterbridge_bill"] == bill["id"]
        and item["price"]["custom_data"]["meterbridge_version"] == 1
        and item["price"]["custom_data"]["meterbridge_config"] == paddle_config["id"]
        for item in charge.items
    )
    total = 4900 + 3000 + 751
    if mode == IMMEDIATELY:  # billed now, in a transaction of its own
        [transaction_] = fake_paddle.transactions_of(subscription)
        assert (transaction_["id"], transaction_["origin"]) == (
            charge.transaction_id,
            "subscription_charge",
        )
        assert int(transaction_["details"]["totals"]["grand_total"]) == total
    else:  # on the renewal's bill, with the plan
        assert charge.transaction_id is None
        renewal = fake_paddle.renew(subscription)
        [billed] = fake_paddle.transactions_of(subscription)
        assert billed["id"] == renewal
        assert int(billed["details"]["totals"]["grand_total"]) == 5000 + total


def test_approving_again_or_a_replayed_approval_changes_nothing(
    api: Api, fake_paddle: FakePaddle, paddle_stack: Stack
) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle, effective_from=IMMEDIATELY)
    bill = api.bill(account["id"], [PLATFORM, STORAGE])
    api.approve(bill["id"])
    api.wait_runs(bill["id"], 1)

    # approving again logs nothing; the approval processed again runs again
    assert api.approve(bill["id"])["event_id"] is None
    replay_approval(paddle_stack, api, bill["id"])
    _, again = api.wait_runs(bill["id"], 2)

    # and the second run finds the version charged: nothing more goes to Paddle
    assert (again["status"], again["items_added"], again["bill_version"]) == ("COMPLETE", 0, 1)
    assert again["invoice_id"] == subscription
    assert len(fake_paddle.applied("charge", subscription)) == 1
    assert len(fake_paddle.transactions_of(subscription)) == 1


def test_a_new_version_after_the_charge_ends_in_a_perform_error_and_charges_nothing(
    api: Api, fake_paddle: FakePaddle, paddle_stack: Stack
) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle)
    bill = api.bill(account["id"], [PLATFORM])
    api.approve(bill["id"])
    api.wait_runs(bill["id"], 1)

    # when the bill becomes version 2 under the charge and is sent again
    replay_approval(paddle_stack, api, bill["id"], version=2, line_items=[STORAGE])
    _, second = api.wait_runs(bill["id"], 2)

    # then the run ends in a perform error naming both versions and the subscription
    assert (second["status"], second["error_type"]) == ("ERROR", "integration.perform.error")
    message = second["error_message"]
    assert "version 1" in message
    assert "version 2" in message
    assert subscription in message
    [event] = [
        e
        for e in api.get("/api/v1/events", type="integration.perform.error")
        if e["id"] == second["error_event_id"]
    ]
    assert event["caused_by"] == second["request_event_id"]
    [charge] = fake_paddle.charges(subscription)
    assert summary(charge) == [(fake_paddle.usage_product, 4900, 1, "Platform fee")]


def test_a_refused_api_key_ends_auth_failed(api: Api, fake_paddle: FakePaddle) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle, credential_id=credential(api, api_key="pdl_wrong")["id"])
    bill = api.bill(account["id"], [PLATFORM])
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["error_type"]) == ("AUTH_FAILED", "integration.authentication.error")
    assert "invalid_token" in run["error_message"]
    assert fake_paddle.charges(subscription) == []


def test_an_account_without_a_subscription_mapping_ends_in_a_missing_mapping_error(
    api: Api, fake_paddle: FakePaddle
) -> None:
    account = api.account()  # mapped to no subscription
    config(api, fake_paddle)
    bill = api.bill(account["id"], [PLATFORM])
    calls = len(fake_paddle.calls)
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["error_type"]) == (
        "ERROR",
        "integration.missingaccountmapping.error",
    )
    assert "Paddle subscription" in run["error_message"]
    assert len(fake_paddle.calls) == calls  # Paddle was never asked


def test_a_429_holds_the_credential_back_for_its_retry_after_and_is_no_failure(
    api: Api, fake_paddle: FakePaddle
) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle)
    bill = api.bill(account["id"], [PLATFORM])
    fake_paddle.fail_next(1, "429", retry_after=2)  # longer than the test's retry cap (1 s)
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)

    assert run["status"] == "COMPLETE", run
    assert (run["attempts"], history(api, run)) == (1, ["waited", "succeeded"])
    refused, charged = [c for c in fake_paddle.calls if c.path.endswith(f"{subscription}/charge")]
    assert (refused.status, charged.status) == (429, 200)
    assert charged.at - refused.at >= 2 - 0.05
    assert len(fake_paddle.charges(subscription)) == 1


def test_a_500_is_retried_and_the_bill_charged_once(api: Api, fake_paddle: FakePaddle) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle)
    bill = api.bill(account["id"], [PLATFORM, STORAGE])
    fake_paddle.fail_next(1, "500")  # the charge call: Paddle may or may not have it
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)

    assert run["status"] == "COMPLETE", run
    assert (run["attempts"], history(api, run), run["items_added"]) == (
        2,
        ["retry", "succeeded"],
        2,
    )
    [charge] = fake_paddle.charges(subscription)
    assert len(charge.items) == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_charge_whose_answer_was_lost_is_found_and_not_sent_again(
    api: Api, fake_paddle: FakePaddle, mode: str
) -> None:
    account, subscription = customer(api, fake_paddle)
    config(api, fake_paddle, effective_from=mode)
    bill = api.bill(account["id"], [PLATFORM, STORAGE])
    fake_paddle.fail_next(1, "apply_then_hang")  # Paddle charges, the answer never comes
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)

    assert run["status"] == "COMPLETE", run
    assert (run["attempts"], history(api, run), run["items_added"]) == (
        2,
        ["retry", "succeeded"],
        2,
    )
    assert len(fake_paddle.applied("charge", subscription)) == 1
    [charge] = fake_paddle.charges(subscription)
    assert summary(charge) == [
        (fake_paddle.usage_product, 751, 1, "Storage GB"),
        (fake_paddle.usage_product, 4900, 1, "Platform fee"),
    ]


@pytest.mark.parametrize(
    ("limit", "mode"),
    [
        ({"requests_per_minute": 1}, NEXT_PERIOD),
        ({"immediate_charges_per_hour": 1}, IMMEDIATELY),
    ],
)
def test_a_run_over_the_credentials_limits_waits_for_its_turn_without_failing(
    api: Api, fake_paddle: FakePaddle, limit: dict[str, int], mode: str
) -> None:
    # given two bills for one subscription, under a limit that has room for one call
    account, subscription = customer(api, fake_paddle)
    paddle_config = config(
        api, fake_paddle, credential_id=credential(api, **limit)["id"], effective_from=mode
    )
    bills = [
        api.bill(account["id"], [PLATFORM], period_start=start, period_end=end)
        for start, end in (("2026-10-01", "2026-11-01"), ("2026-11-01", "2026-12-01"))
    ]
    for bill in bills:
        api.approve(bill["id"])

    # then one is charged and the other waits for its turn, retrying without attempts
    def one_done_one_waiting() -> list[dict[str, Any]] | None:
        runs = [run for bill in bills for run in api.runs(bill_id=bill["id"])]
        statuses = sorted(run["status"] for run in runs)
        waiting = [run for run in runs if run["status"] == "AWAITING_RETRY"]
        if (
            statuses == ["AWAITING_RETRY", "COMPLETE"]
            and history(api, waiting[0]).count("waited") >= 3
        ):
            return waiting
        return None

    [waiting] = wait_for(one_done_one_waiting, timeout=30, what="one run waiting its turn")
    assert set(history(api, waiting)) == {"waited"}
    assert waiting["attempts"] == 1
    assert len(fake_paddle.charges(subscription)) == 1
    assert not [c for c in fake_paddle.calls if subscription in c.path and c.status == 429]
    assert api.get(f"/api/v1/integrations/{paddle_config['id']}")["consecutive_errors"] == 0

    # when the config is disabled, the waiting run is held
    api.post(f"/api/v1/integrations/{paddle_config['id']}/disable")
    runs = api.wait_runs(waiting["bill_id"], 1)
    assert [run["status"] for run in runs] == ["DISABLED"]


def test_a_paddle_credential_shows_its_options_and_never_its_key(api: Api) -> None:
    created = credential(api, requests_per_minute=120)
    assert (created["destination"], created["site"]) == ("paddle", None)
    assert created["options"] == {
        "environment": "sandbox",
        "requests_per_minute": 120,
        "immediate_charges_per_hour": 20,
    }
    assert API_KEY not in str(api.get(f"/api/v1/credentials/{created['id']}"))
