# mypy: disable-error-code="import-untyped"
"""Our Paddle client against the fake, and the fake against Paddle's own SDK (so the fake
speaks Paddle, not just what our client expects)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from paddle_billing import Client, Options
from paddle_billing.Entities.Shared import CurrencyCode, CustomData, Money
from paddle_billing.Entities.Subscriptions import SubscriptionEffectiveFrom
from paddle_billing.Exceptions.ApiError import ApiError
from paddle_billing.Resources.Subscriptions.Operations import (
    CreateOneTimeCharge,
    SubscriptionIncludes,
)
from paddle_billing.Resources.Subscriptions.Operations.Charge import (
    SubscriptionChargeItem,
    SubscriptionChargeItemWithPrice,
)
from paddle_billing.Resources.Subscriptions.Operations.Price import SubscriptionNonCatalogPrice
from paddle_billing.Resources.Transactions.Operations import (
    ListTransactions,
    TransactionOrigin,
)

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from tests.support.fake_paddle import API_KEY, FakePaddle
from workers.destinations.paddle.client import (
    CatalogItem,
    NonCatalogItem,
    PaddleClient,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePaddle]:
    server = FakePaddle(hang_seconds=2).start()
    yield server
    server.stop()


def client(fake: FakePaddle, key: str = API_KEY, **kwargs: Any) -> PaddleClient:
    return PaddleClient(api_key=key, base_url=fake.url, timeout=1.0, **kwargs)


def line(fake: FakePaddle, bill: str, *, quantity: int = 1, amount: int = 1250) -> NonCatalogItem:
    return NonCatalogItem(
        description=f"bill {bill} v1 line 1",
        amount=amount,
        currency_code="USD",
        product_id=fake.usage_product,
        quantity=quantity,
        name="API calls",
        custom_data={"meterbridge_bill": bill, "version": 1, "line": 1},
    )


def sdk(fake: FakePaddle, key: str = API_KEY) -> Client:
    # Options wants an Environment; the SDK only reads its base_url (urljoin in _make_request)
    return Client(key, options=Options(SimpleNamespace(base_url=fake.url)))


# --- the fake against the official SDK ------------------------------------------------


def test_the_official_sdk_reads_and_writes_the_fake(fake: FakePaddle) -> None:
    sub = fake.subscription(currency="USD", customer="ctm_sdk")
    catalog = fake.price(amount=900, description="Setup fee")
    paddle = sdk(fake)

    subscription = paddle.subscriptions.get(sub)
    assert (subscription.id, subscription.status, subscription.customer_id) == (
        sub,
        "active",
        "ctm_sdk",
    )
    assert subscription.currency_code == CurrencyCode.USD
    assert subscription.next_billed_at is not None

    charged = paddle.subscriptions.create_one_time_charge(
        sub,
        CreateOneTimeCharge(
            effective_from=SubscriptionEffectiveFrom.Immediately,
            items=[
                SubscriptionChargeItemWithPrice(
                    price=SubscriptionNonCatalogPrice(
                        description="bill b-sdk v1 line 1",
                        unit_price=Money("1234", CurrencyCode.USD),
                        product_id=fake.usage_product,
                        name="API calls",
                        custom_data=CustomData({"meterbridge_bill": "b-sdk"}),
                    ),
                    quantity=2,
                ),
                SubscriptionChargeItem(price_id=catalog, quantity=1),
            ],
        ),
    )
    assert charged.id == sub  # the answer is the subscription, not the charge

    [txn] = list(
        paddle.transactions.list(
            ListTransactions(subscription_ids=[sub], origins=[TransactionOrigin.SubscriptionCharge])
        )
    )
    custom, setup = txn.items
    assert custom.price.custom_data is not None
    assert custom.price.custom_data.data == {"meterbridge_bill": "b-sdk"}
    assert (custom.quantity, custom.price.unit_price.amount, setup.price.id) == (2, "1234", catalog)
    assert txn.details.totals.total == str(2 * 1234 + 900)
    assert paddle.transactions.get(txn.id).id == txn.id
    assert paddle.prices.get(custom.price.id).custom_data.data == {"meterbridge_bill": "b-sdk"}

    paddle.subscriptions.create_one_time_charge(
        sub,
        CreateOneTimeCharge(
            effective_from=SubscriptionEffectiveFrom.NextBillingPeriod,
            items=[SubscriptionChargeItem(price_id=catalog, quantity=3)],
        ),
    )
    upcoming = paddle.subscriptions.get(sub, includes=[SubscriptionIncludes.NextTransaction])
    assert upcoming.next_transaction is not None
    assert [(i.price_id, i.quantity) for i in upcoming.next_transaction.details.line_items][-1] == (
        catalog,
        3,
    )


def test_the_sdk_pages_through_the_fakes_transactions(fake: FakePaddle) -> None:
    subs = [fake.subscription(), fake.subscription()]
    for sub in subs:
        for _ in range(17):
            fake.renew(sub)
    listed = list(sdk(fake).transactions.list(ListTransactions(subscription_ids=subs)))
    assert len(listed) == 34  # over one page of 30
    assert len({t.id for t in listed}) == 34


def test_the_fake_refuses_what_paddle_refuses_as_the_sdk_sees_it(fake: FakePaddle) -> None:
    sub = fake.subscription()
    paddle = sdk(fake)
    item = {"price_id": fake.price(), "quantity": 1}
    with pytest.raises(ApiError) as unknown_field:
        # the charge has no custom_data: Paddle refuses any field it does not know
        paddle.post_raw(
            f"/subscriptions/{sub}/charge",
            {"effective_from": "immediately", "items": [item], "custom_data": {"bill": "b"}},
        )
    assert unknown_field.value.error_code == "invalid_field"
    assert [e.field for e in unknown_field.value.field_errors] == ["custom_data"]
    with pytest.raises(ApiError) as refused:
        sdk(fake, key="pdl_sdbx_apikey_wrong").subscriptions.get(sub)
    assert (refused.value.response.status_code, refused.value.error_code) == (403, "invalid_token")
    assert fake.charges(sub) == []


# --- our client against the fake -----------------------------------------------------


def test_client_reads_a_subscription(fake: FakePaddle) -> None:
    sub = fake.subscription(currency="EUR", customer="ctm_read", collection_mode="manual")
    with client(fake) as paddle:
        found = paddle.subscription(sub)
    assert (found.id, found.status, found.customer_id, found.currency_code) == (
        sub,
        "active",
        "ctm_read",
        "EUR",
    )
    assert found.collection_mode == "manual"
    assert found.next_billed_at is not None
    assert found.next_billed_at > datetime.now(UTC) + timedelta(days=29)
    assert len(found.recurring_price_ids) == 1
    assert found.next_transaction is None  # only when asked for


def test_an_immediate_charge_is_found_again_by_its_price_custom_data(fake: FakePaddle) -> None:
    sub = fake.subscription()
    catalog = fake.price(amount=500)
    with client(fake) as paddle:
        answer = paddle.charge(
            sub, [line(fake, "b-now", quantity=3), CatalogItem(catalog, 2)], "immediately"
        )
        assert answer.id == sub
        [txn] = paddle.transactions(sub, origin=["subscription_charge"])
        assert paddle.transaction(txn.id) == txn
        hour_ago, later = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(1)
        assert paddle.transactions(sub, status=["completed"], created_from=hour_ago) == [txn]
        assert paddle.transactions(sub, created_from=later) == []
        assert paddle.transactions(sub, status=["billed"]) == []
    assert (txn.origin, txn.subscription_id, txn.status) == (
        "subscription_charge",
        sub,
        "completed",
    )
    ours, setup = txn.items
    assert ours.price.custom_data == {"meterbridge_bill": "b-now", "version": 1, "line": 1}
    assert (ours.price.type, ours.price.amount, ours.quantity) == ("custom", 1250, 3)
    assert (setup.price.id, setup.price.custom_data, setup.quantity) == (catalog, None, 2)
    assert txn.total == 3 * 1250 + 2 * 500
    [charge] = fake.charges(sub)
    assert (charge.effective_from, charge.transaction_id) == ("immediately", txn.id)


def test_a_next_period_charge_waits_in_the_next_transaction_until_renewal(
    fake: FakePaddle,
) -> None:
    sub = fake.subscription()
    with client(fake) as paddle:
        paddle.charge(sub, [line(fake, "b-later", quantity=2)])
        assert paddle.transactions(sub) == []  # nothing is billed before the renewal
        upcoming = paddle.subscription(sub, next_transaction=True).next_transaction
        assert upcoming is not None
        plan, pending = upcoming.lines
        assert pending.price_id is not None
        assert (pending.quantity, pending.subtotal) == (2, 2500)
        # the preview names the price only; the price holds the charge's custom_data
        assert paddle.price(pending.price_id).custom_data == {
            "meterbridge_bill": "b-later",
            "version": 1,
            "line": 1,
        }
        renewal = fake.renew(sub)
        [txn] = paddle.transactions(sub, origin=["subscription_recurring"])
        assert txn.id == renewal
        assert [i.price.custom_data for i in txn.items] == [
            None,
            {"meterbridge_bill": "b-later", "version": 1, "line": 1},
        ]
        after = paddle.subscription(sub, next_transaction=True).next_transaction
        assert after is not None
        assert [p.price_id for p in after.lines] == [plan.price_id]  # the charge went once


def test_transactions_follow_every_page(fake: FakePaddle) -> None:
    sub = fake.subscription()
    renewals = [fake.renew(sub) for _ in range(65)]
    seen: list[str] = []
    with client(fake, before_request=seen.append) as paddle:
        found = paddle.transactions(sub, origin=["subscription_recurring"])
    assert [t.id for t in found] == renewals
    assert seen == ["GET /transactions"] * 3  # 30 + 30 + 5


def test_a_large_quantity_fits_the_non_catalog_price(fake: FakePaddle) -> None:
    sub = fake.subscription()
    with client(fake) as paddle:
        paddle.charge(sub, [line(fake, "b-many", quantity=25_000, amount=2)], "immediately")
        [txn] = paddle.transactions(sub)
    assert (txn.items[0].quantity, txn.total) == (25_000, 50_000)


def test_items_refuse_what_paddle_cannot_hold() -> None:
    with pytest.raises(ValueError, match="whole number"):
        CatalogItem("pri_1", 0)
    with pytest.raises(ValueError, match="whole number"):
        NonCatalogItem("usage", 100, "USD", "pro_1", quantity=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minor units"):
        NonCatalogItem("usage", -1, "USD", "pro_1", quantity=1)
    with pytest.raises(ValueError, match="description"):
        NonCatalogItem("u", 1, "USD", "pro_1", quantity=1)


def test_client_turns_answers_into_error_types(fake: FakePaddle) -> None:
    sub = fake.subscription()
    item = line(fake, "b-errors")
    with (
        client(fake, key="pdl_sdbx_apikey_revoked") as paddle,
        pytest.raises(AuthenticationFailed, match="403 invalid_token"),
    ):
        paddle.subscription(sub)
    fake.forbidden_keys.add("pdl_sdbx_apikey_readonly")
    fake.api_keys.add("pdl_sdbx_apikey_readonly")
    with (
        client(fake, key="pdl_sdbx_apikey_readonly") as paddle,
        pytest.raises(AuthenticationFailed, match="403 forbidden"),
    ):
        paddle.charge(sub, [item])
    with client(fake) as paddle:
        with pytest.raises(PerformFailed, match="404 not_found"):
            paddle.subscription("sub_missing")
        wrong_currency = NonCatalogItem("usage in EUR", 100, "EUR", fake.usage_product, 1)
        with pytest.raises(PerformFailed, match=r"invalid_field.*currency_code"):
            paddle.charge(sub, [wrong_currency])
        narrow = fake.price(quantity=(1, 10))
        with pytest.raises(PerformFailed, match="subscription_quantity_not_valid"):
            paddle.charge(sub, [CatalogItem(narrow, 11)])
        fake.fail_next(1, "500")
        with pytest.raises(TransientError, match="500 internal_error"):
            paddle.charge(sub, [item])
        fake.fail_next(1, "429", retry_after=7)
        with pytest.raises(TransientError) as limited:
            paddle.charge(sub, [item])
        assert limited.value.retry_after == 7
        fake.fail_next(1, "hang")
        with pytest.raises(TransientError, match="in time"):
            paddle.charge(sub, [item])
    assert fake.charges(sub) == []
    with (
        PaddleClient(api_key="k", base_url="http://127.0.0.1:1", timeout=1) as paddle,
        pytest.raises(TransientError, match="cannot reach"),
    ):
        paddle.subscription("sub_1")


def test_an_expired_oauth_token_is_an_authentication_failure() -> None:
    # Paddle answers 401 only for OAuth access tokens; API keys get 403 (tested above)
    def expired(request: httpx.Request) -> httpx.Response:
        body = {
            "error": {
                "type": "request_error",
                "code": "invalid_access_token",
                "detail": "Access token is expired or invalid.",
                "documentation_url": "https://developer.paddle.com/errors/shared/invalid_access_token",
            },
            "meta": {"request_id": "r-1"},
        }
        return httpx.Response(401, json=body)

    transport = httpx.MockTransport(expired)
    with (
        PaddleClient(api_key="k", base_url="https://x", timeout=1, transport=transport) as paddle,
        pytest.raises(AuthenticationFailed, match=r"401 invalid_access_token.*\[request r-1\]"),
    ):
        paddle.subscription("sub_1")


def test_a_charge_whose_answer_was_lost_was_applied_once(fake: FakePaddle) -> None:
    sub = fake.subscription()
    with client(fake) as paddle:
        fake.fail_next(1, "apply_then_hang")
        with pytest.raises(TransientError, match="in time"):
            paddle.charge(sub, [line(fake, "b-lost")], "immediately")
        # before sending again, look: the charge is there, under its custom_data
        found = [
            item.price.custom_data
            for txn in paddle.transactions(sub, origin=["subscription_charge"])
            for item in txn.items
        ]
    assert found == [{"meterbridge_bill": "b-lost", "version": 1, "line": 1}]
    time.sleep(1.5)  # the hung answer goes out (to no one) and is counted as applied
    assert len(fake.applied("charge", sub)) == 1


def test_a_subscription_that_cannot_be_charged_is_a_perform_failure(fake: FakePaddle) -> None:
    paused, canceled = fake.subscription(status="paused"), fake.subscription(status="canceled")
    soon = fake.subscription(next_billed_at=datetime.now(UTC) + timedelta(minutes=10))
    with client(fake) as paddle:
        with pytest.raises(PerformFailed, match="subscription_not_active"):
            paddle.charge(paused, [line(fake, "b-paused")])
        with pytest.raises(PerformFailed, match="subscription_update_when_canceled"):
            paddle.charge(canceled, [line(fake, "b-canceled")])
        # locked for the 30 minutes before renewal: try again later, not a failure
        with pytest.raises(TransientError, match="409 subscription_locked_renewal") as locked:
            paddle.charge(soon, [line(fake, "b-soon")])
    assert locked.value.retry_after == 300


def test_the_request_limit_answers_429_with_retry_after() -> None:
    limited = FakePaddle(requests_per_minute=3, minute_seconds=1.0).start()
    try:
        sub = limited.subscription()
        with client(limited) as paddle:
            for _ in range(3):
                paddle.subscription(sub)
            started = time.monotonic()
            with pytest.raises(TransientError, match="429 too_many_requests") as refused:
                paddle.subscription(sub)
            assert refused.value.retry_after == 1
            time.sleep(max(0.0, started + 1.0 - time.monotonic()))
            assert paddle.subscription(sub).id == sub  # the window moved on
        assert limited.peak(1.0) == 4  # three, the refused one, then none until it moved
    finally:
        limited.stop()


def test_immediate_charges_are_limited_per_subscription_per_hour_and_day() -> None:
    limited = FakePaddle(immediate_charges_per_hour=2, immediate_charges_per_day=3).start()
    try:
        sub, other = limited.subscription(), limited.subscription()
        with client(limited) as paddle:
            for _ in range(2):
                paddle.charge(sub, [line(limited, "b-hour")], "immediately")
            with pytest.raises(TransientError, match="hour_limit_exceeded") as hourly:
                paddle.charge(sub, [line(limited, "b-hour")], "immediately")
            assert hourly.value.retry_after is not None
            assert 3590 <= hourly.value.retry_after <= 3600
            paddle.charge(sub, [line(limited, "b-hour")])  # next_billing_period is not limited
            paddle.charge(other, [line(limited, "b-other")], "immediately")  # per subscription
        assert [c.effective_from for c in limited.charges(sub)] == [
            "immediately",
            "immediately",
            "next_billing_period",
        ]
        daily = FakePaddle(immediate_charges_per_hour=2, immediate_charges_per_day=3)
        daily.hour_seconds = 0.2  # the fake's hour: a 24-hour day of 4.8 seconds
        daily.start()
        try:
            sub = daily.subscription()
            with client(daily) as paddle:
                for _ in range(3):
                    paddle.charge(sub, [line(daily, "b-day")], "immediately")
                    time.sleep(0.25)
                with pytest.raises(TransientError, match="24_hour_limit_exceeded") as per_day:
                    paddle.charge(sub, [line(daily, "b-day")], "immediately")
            assert per_day.value.retry_after is not None
            assert 1 <= per_day.value.retry_after <= 5
        finally:
            daily.stop()
    finally:
        limited.stop()


def test_before_request_sees_every_endpoint_and_can_hold_a_call_back(fake: FakePaddle) -> None:
    sub = fake.subscription()
    seen: list[str] = []
    with client(fake, before_request=seen.append) as paddle:
        paddle.subscription(sub)
        paddle.charge(sub, [line(fake, "b-hook")], "immediately")
        [txn] = paddle.transactions(sub)
        paddle.transaction(txn.id)
        paddle.price(txn.items[0].price.id)
    assert seen == [
        "GET /subscriptions/{id}",
        "POST /subscriptions/{id}/charge",
        "GET /transactions",
        "GET /transactions/{id}",
        "GET /prices/{id}",
    ]

    class NoTurn(TransientError):
        pass

    def refuse(endpoint: str) -> None:
        raise NoTurn(f"no turn for {endpoint}", retry_after=2)

    calls = len(fake.calls)
    with client(fake, before_request=refuse) as paddle, pytest.raises(NoTurn):
        paddle.charge(sub, [line(fake, "b-held")])
    assert len(fake.calls) == calls  # nothing was sent
