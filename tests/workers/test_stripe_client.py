"""Our Stripe client against the fake, and the fake against Stripe's own SDK (so the fake
speaks Stripe, not just what our client expects)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any, cast

import httpx
import pytest
import stripe

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from tests.support.fake_stripe import API_KEY, RESTRICTED_KEY, Call, FakeStripe
from workers.destinations.stripe.client import (
    MAX_ITEMS_PER_INVOICE,
    STRIPE_VERSION,
    ByAmount,
    ByPrice,
    ByUnitAmount,
    KeptFailure,
    Pricing,
    RateLimited,
    StripeClient,
    StripeRefused,
    encode,
)

PERIOD = (1700000000, 1700086399)
_customers = itertools.count(1)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe(hang_seconds=2).start()
    server.price("price_usage", unit_amount=25)
    yield server
    server.stop()


@pytest.fixture
def customer() -> str:
    return f"cus_test{next(_customers)}"


def client(
    fake: FakeStripe, key: str = API_KEY, before_request: Callable[[str], None] | None = None
) -> StripeClient:
    return StripeClient(key, fake.url, 1.0, before_request=before_request)


def sdk(fake: FakeStripe, key: str = API_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": fake.url}, max_network_retries=0)


def draft(cb: StripeClient, customer: str, key: str) -> str:
    return cb.create_invoice(
        customer=customer, currency="usd", collection_method="charge_automatically", key=key
    ).id


# --- the fake, as Stripe's SDK sees it -------------------------------------------------------


def test_the_sdk_puts_a_bill_on_a_draft_invoice(fake: FakeStripe, customer: str) -> None:
    sc = sdk(fake)
    invoice = sc.v1.invoices.create(
        {
            "customer": customer,
            "auto_advance": False,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "pending_invoice_items_behavior": "exclude",
            "currency": "usd",
            "metadata": {"bill_id": "bill_1"},
        }
    )
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.status, invoice.collection_method) == ("draft", "send_invoice")
    assert invoice.metadata is not None
    assert invoice.metadata.to_dict() == {"bill_id": "bill_1"}
    by_price = sc.v1.invoice_items.create(
        {
            "customer": customer,
            "invoice": invoice.id,
            "currency": "usd",
            "description": "API calls",
            "period": {"start": PERIOD[0], "end": PERIOD[1]},
            "pricing": {"price": "price_usage"},
            "quantity": 3,
            "metadata": {"bill_id": "bill_1", "line": "1"},
        }
    )
    by_unit = sc.v1.invoice_items.create(
        {
            "customer": customer,
            "invoice": invoice.id,
            "currency": "usd",
            "description": "storage",
            "unit_amount_decimal": Decimal("0.125"),
            "quantity_decimal": Decimal("40.5"),
        }
    )
    credit = sc.v1.invoice_items.create(
        {"customer": customer, "invoice": invoice.id, "currency": "usd", "amount": -500}
    )
    assert isinstance(by_price, stripe.InvoiceItem)
    assert by_price.pricing is not None
    assert by_price.pricing.price_details is not None
    assert (by_price.amount, by_price.pricing.price_details.price, by_price.period.start) == (
        75,
        "price_usage",
        PERIOD[0],
    )
    assert by_unit.quantity_decimal == Decimal("40.5")
    assert by_unit.pricing is not None
    assert by_unit.pricing.unit_amount_decimal == Decimal("0.125")
    assert by_unit.amount == 5  # 5.0625 cents, rounded by Stripe
    assert credit.amount == -500
    assert credit.discountable is False

    listed = sc.v1.invoice_items.list({"invoice": invoice.id, "limit": 2})
    assert listed.has_more is True
    assert [item.id for item in listed.auto_paging_iter()] == [credit.id, by_unit.id, by_price.id]
    lines = sc.v1.invoices.line_items.list(invoice.id)
    assert [type(line) for line in lines.data] == [stripe.InvoiceLineItem] * 3
    assert lines.data[0].parent is not None
    assert lines.data[0].parent.invoice_item_details is not None
    assert lines.data[0].parent.invoice_item_details.invoice_item == by_price.id

    deleted = sc.v1.invoice_items.delete(by_unit.id)
    assert deleted.deleted is True
    again = sc.v1.invoices.retrieve(invoice.id)
    assert (again.total, again.amount_due, len(again.lines.data)) == (-425, 0, 2)

    finalized = sc.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status == "paid"  # nothing due: Stripe marks it paid
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sc.v1.invoice_items.delete(by_price.id)
    assert refused.value.code == "invoice_not_editable"
    assert {call.stripe_version for call in fake.calls} == {stripe.api_version}


def test_the_sdk_leaves_items_pending_for_the_next_invoice(fake: FakeStripe, customer: str) -> None:
    sc = sdk(fake)
    item = sc.v1.invoice_items.create(
        {
            "customer": customer,
            "subscription": "sub_1",
            "currency": "usd",
            "amount": 1200,
            "description": "minimum spend",
        }
    )
    assert item.invoice is None
    assert item.parent is not None
    assert item.parent.subscription_details is not None
    assert item.parent.subscription_details.subscription == "sub_1"
    pending = sc.v1.invoice_items.list({"customer": customer, "pending": True})
    assert [entry.id for entry in pending.data] == [item.id]

    invoice_id = fake.raise_next_invoice(customer, "sub_1")
    invoiced = sc.v1.invoice_items.retrieve(item.id)
    assert invoiced.invoice == invoice_id
    assert sc.v1.invoice_items.list({"customer": customer, "pending": True}).data == []
    [raised] = sc.v1.invoices.list({"customer": customer, "status": "open"}).data
    assert (raised.id, raised.total) == (invoice_id, 1200)


def test_the_sdk_gets_stripes_errors(fake: FakeStripe, customer: str) -> None:
    sc = sdk(fake)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        sc.v1.invoice_items.create(cast(Any, {"customer": customer, "price": "price_usage"}))
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "price")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sc.v1.invoices.retrieve("in_missing")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.AuthenticationError):
        sdk(fake, key="sk_test_not_a_key_1234").v1.invoices.list({"customer": customer})

    params: Any = {"customer": customer, "currency": "usd", "amount": 100}
    first = sc.v1.invoice_items.create(params, {"idempotency_key": f"{customer}-1"})
    second = sc.v1.invoice_items.create(params, {"idempotency_key": f"{customer}-1"})
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        sc.v1.invoice_items.create(
            cast(Any, {**params, "amount": 200}),
            {"idempotency_key": f"{customer}-1"},
        )
    assert len(fake.items(customer=customer)) == 1


def test_our_pinned_version_is_the_one_the_sdk_checks_here() -> None:
    # The SDK tests above check the fake's shapes for the SDK's version; the client reads
    # those shapes, so it must ask for the same one. A new SDK means checking them again.
    assert stripe.api_version == STRIPE_VERSION


# --- our client ----------------------------------------------------------------------------


def test_client_creates_a_draft_invoice_holding_the_bills_lines(
    fake: FakeStripe, customer: str
) -> None:
    with client(fake) as cb:
        invoice = cb.create_invoice(
            customer=customer,
            currency="USD",
            collection_method="send_invoice",
            days_until_due=14,
            metadata={"bill_id": "bill_9"},
            key=f"{customer}:invoice",
        )
        assert (invoice.status, invoice.is_draft, invoice.metadata) == (
            "draft",
            True,
            {"bill_id": "bill_9"},
        )
        pricings: list[Pricing] = [
            ByPrice("price_usage", 4),
            ByUnitAmount(Decimal("0.0012"), Decimal("2500.5")),
            ByAmount(-300),
        ]
        created = [
            cb.create_invoice_item(
                key=f"{customer}:{index}",
                customer=customer,
                invoice=invoice.id,
                currency="usd",
                description=f"line {index}",
                pricing=pricing,
                period=PERIOD,
                metadata={"bill_id": "bill_9", "line": str(index)},
            )
            for index, pricing in enumerate(pricings)
        ]
        assert [(item.amount, item.price, item.invoice) for item in created] == [
            (100, "price_usage", invoice.id),
            (3, None, invoice.id),
            (-300, None, invoice.id),
        ]
        assert created[1].quantity == Decimal("2500.5")
        assert created[1].unit_amount_decimal == Decimal("0.0012")
        assert created[0].period == PERIOD
        assert created[0].metadata == {"bill_id": "bill_9", "line": "0"}
        listed = cb.list_invoice_items(invoice=invoice.id)
        assert [item.id for item in listed] == [item.id for item in reversed(created)]
        assert cb.invoice(invoice.id).total == 100 + 3 - 300
        [found] = cb.list_invoices(customer=customer, status="draft")
        assert found.id == invoice.id
    [sent] = fake.applied("create_invoice", customer=customer)
    assert sent.params == {
        "customer": customer,
        "currency": "usd",
        "collection_method": "send_invoice",
        "days_until_due": "14",
        "auto_advance": "false",
        "pending_invoice_items_behavior": "exclude",
        "metadata": {"bill_id": "bill_9"},
    }
    assert sent.stripe_version == STRIPE_VERSION
    assert sent.key == f"{customer}:invoice"
    by_unit = fake.applied("create_invoice_item", customer=customer)[1]
    assert by_unit.params["unit_amount_decimal"] == "0.0012"
    assert by_unit.params["quantity_decimal"] == "2500.5"
    assert by_unit.params["period"] == {"start": str(PERIOD[0]), "end": str(PERIOD[1])}


def test_client_sends_a_recorded_form_as_it_is(fake: FakeStripe, customer: str) -> None:
    form = {
        "currency": "usd",
        "description": "API calls (12.5)",
        "period[start]": str(PERIOD[0]),
        "period[end]": str(PERIOD[1]),
        "amount": "313",
        "metadata[meterbridge_item]": "line-1",
    }
    with client(fake) as cb:
        invoice_id = draft(cb, customer, f"{customer}:invoice")
        item = cb.create_invoice_item_from_form(
            form, key=f"{customer}:1", customer=customer, invoice=invoice_id
        )
    assert (item.amount, item.invoice, item.period) == (313, invoice_id, PERIOD)
    assert item.metadata == {"meterbridge_item": "line-1"}
    [sent] = fake.applied("create_invoice_item", customer=customer)
    assert sent.params == {
        "currency": "usd",
        "description": "API calls (12.5)",
        "period": {"start": str(PERIOD[0]), "end": str(PERIOD[1])},
        "amount": "313",
        "metadata": {"meterbridge_item": "line-1"},
        "customer": customer,
        "invoice": invoice_id,
    }


def test_client_lists_every_page(fake: FakeStripe, customer: str) -> None:
    with client(fake) as cb:
        for index in range(101):
            cb.create_invoice_item(
                key=f"{customer}:{index}",
                customer=customer,
                currency="usd",
                description="x",
                pricing=ByAmount(index),
            )
        pending = cb.list_invoice_items(customer=customer, pending=True)
    assert [item.amount for item in pending] == list(reversed(range(101)))
    assert all(item.pending for item in pending)
    pages = [
        call
        for call in fake.calls_to("GET /v1/invoiceitems")
        if call.params.get("customer") == customer
    ]
    assert [page.params.get("starting_after") for page in pages] == [None, pending[99].id]


def test_client_replaces_pending_items_until_stripe_invoices_them(
    fake: FakeStripe, customer: str
) -> None:
    with client(fake) as cb:
        old = cb.create_invoice_item(
            key=f"{customer}:v1",
            customer=customer,
            subscription="sub_7",
            currency="usd",
            description="v1",
            pricing=ByAmount(100),
        )
        assert (old.pending, old.subscription) == (True, "sub_7")
        assert cb.delete_invoice_item(old.id, key=f"{customer}:v2:delete") is True
        assert cb.delete_invoice_item(old.id, key=f"{customer}:v2:delete") is False
        new = cb.create_invoice_item(
            key=f"{customer}:v2",
            customer=customer,
            subscription="sub_7",
            currency="usd",
            description="v2",
            pricing=ByAmount(150),
        )
        invoice_id = fake.raise_next_invoice(customer, "sub_7")
        assert cb.list_invoice_items(customer=customer, pending=True) == []
        [invoiced] = cb.list_invoice_items(invoice=invoice_id)
        assert (invoiced.id, invoiced.pending) == (new.id, False)
        with pytest.raises(StripeRefused, match="can be deleted") as refused:
            cb.delete_invoice_item(new.id, key=f"{customer}:v3:delete")
    assert refused.value.code == "invoice_not_editable"
    assert [item["id"] for item in fake.items(customer=customer)] == [new.id]
    deletes = fake.calls_to("DELETE /v1/invoiceitems/{id}")
    assert [call.status for call in deletes if (call.key or "").startswith(customer)] == [
        200,
        404,
        400,
    ]


def test_client_cannot_change_an_invoice_that_is_no_longer_a_draft(
    fake: FakeStripe, customer: str
) -> None:
    with client(fake) as cb:
        invoice_id = draft(cb, customer, f"{customer}:invoice")
        cb.create_invoice_item(
            key=f"{customer}:1",
            customer=customer,
            invoice=invoice_id,
            currency="usd",
            description="usage",
            pricing=ByAmount(100),
        )
        finalized = cb.finalize_invoice(invoice_id, key=f"{customer}:finalize")
        assert (finalized.status, finalized.is_draft) == ("open", False)
        with pytest.raises(StripeRefused, match="only be added to a draft invoice"):
            cb.create_invoice_item(
                key=f"{customer}:2",
                customer=customer,
                invoice=invoice_id,
                currency="usd",
                description="late",
                pricing=ByAmount(100),
            )
        with pytest.raises(PerformFailed, match="already finalized"):
            cb.finalize_invoice(invoice_id, key=f"{customer}:finalize-again")
    assert len(fake.items(invoice_id)) == 1


def test_an_invoice_holds_at_most_250_items(fake: FakeStripe, customer: str) -> None:
    with client(fake) as cb:
        invoice_id = draft(cb, customer, f"{customer}:invoice")
        for index in range(MAX_ITEMS_PER_INVOICE):
            cb.create_invoice_item(
                key=f"{customer}:{index}",
                customer=customer,
                invoice=invoice_id,
                currency="usd",
                description="x",
                pricing=ByAmount(1),
            )
        with pytest.raises(StripeRefused, match="at most 250 invoice items"):
            cb.create_invoice_item(
                key=f"{customer}:250",
                customer=customer,
                invoice=invoice_id,
                currency="usd",
                description="x",
                pricing=ByAmount(1),
            )
    assert len(fake.items(invoice_id)) == MAX_ITEMS_PER_INVOICE


def test_a_write_whose_answer_was_lost_is_replayed_not_repeated(
    fake: FakeStripe, customer: str
) -> None:
    def add(cb: StripeClient, description: str = "usage") -> str:
        return cb.create_invoice_item(
            key=f"{customer}:1",
            customer=customer,
            currency="usd",
            description=description,
            pricing=ByPrice("price_usage", 2),
        ).id

    with client(fake) as cb:
        fake.fail_next(1, "apply_then_hang", endpoint="POST /v1/invoiceitems")
        with pytest.raises(TransientError, match="in time"):
            add(cb)
        again = add(cb)
        with pytest.raises(StripeRefused, match="same parameters") as reused:
            add(cb, description="other")
    assert reused.value.status == 400
    assert [entry["id"] for entry in fake.items(customer=customer)] == [again]
    assert len(fake.applied("create_invoice_item", customer=customer)) == 1
    mine = [call for call in fake.calls_to("POST /v1/invoiceitems") if call.key == f"{customer}:1"]
    assert [(call.status, call.replayed) for call in mine] == [
        (200, False),
        (200, True),
        (400, False),
    ]


def test_client_turns_answers_into_error_types(fake: FakeStripe, customer: str) -> None:
    with (
        client(fake, key="sk_test_wrong_key_1234") as cb,
        pytest.raises(AuthenticationFailed, match="Invalid API Key provided: sk_test_"),
    ):
        cb.list_invoices(customer=customer)
    with client(fake, key=RESTRICTED_KEY) as cb, pytest.raises(AuthenticationFailed, match="403"):
        cb.list_invoices(customer=customer)
    with client(fake) as cb:
        with pytest.raises(StripeRefused, match="No such invoice: 'in_nope'"):
            cb.invoice("in_nope")
        with pytest.raises(PerformFailed, match="No such price"):
            cb.create_invoice_item(
                key=f"{customer}:0",
                customer=customer,
                currency="usd",
                description="x",
                pricing=ByPrice("price_nope", 1),
            )
        fake.fail_next(1, "500")
        with pytest.raises(TransientError) as failed:
            cb.list_invoices(customer=customer)
        assert failed.value.retry_after is None
        fake.fail_next(1, "429", retry_after=7)
        with pytest.raises(TransientError) as limited:
            cb.list_invoices(customer=customer)
        assert limited.value.retry_after == 7
        fake.fail_next(1, "409")
        with pytest.raises(TransientError, match="409"):
            cb.list_invoices(customer=customer)
        fake.fail_next(1, "hang")
        with pytest.raises(TransientError, match="in time"):
            cb.list_invoices(customer=customer)
        fake.fail_next(1, "500_saved")
        for _ in range(2):  # the second answer is Stripe's replay of the first
            with pytest.raises(TransientError, match="keeps this answer"):
                draft(cb, customer, f"{customer}:saved")
    saved = [call for call in fake.calls_to("POST /v1/invoices") if call.key == f"{customer}:saved"]
    assert [(call.status, call.replayed) for call in saved] == [(500, False), (500, True)]
    assert [i for i in fake.invoices.values() if i["customer"] == customer] == []
    assert fake.applied("create_invoice", customer=customer) == []
    with (
        StripeClient("sk_test_x", "http://127.0.0.1:1", 1.0) as cb,
        pytest.raises(TransientError, match="cannot reach"),
    ):
        cb.invoice("in_1")


def test_retry_after_may_be_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)

    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            headers={"Retry-After": format_datetime(later, usegmt=True)},
            json={"error": {"type": "api_error", "message": "down for maintenance"}},
        )

    with (
        StripeClient("sk_test_x", "https://stripe.test", 1.0, httpx.MockTransport(answer)) as cb,
        pytest.raises(TransientError, match="down for maintenance") as down,
    ):
        cb.invoice("in_1")
    assert down.value.retry_after is not None
    assert 25 <= down.value.retry_after <= 30


def test_every_request_asks_before_request_first(fake: FakeStripe, customer: str) -> None:
    asked: list[str] = []
    with client(fake, before_request=asked.append) as cb:
        invoice_id = draft(cb, customer, f"{customer}:invoice")
        cb.invoice(invoice_id)
        cb.list_invoice_items(invoice=invoice_id)
        cb.finalize_invoice(invoice_id, key=f"{customer}:finalize")
    assert asked == [
        "POST /v1/invoices",
        "GET /v1/invoices/{id}",
        "GET /v1/invoiceitems",
        "POST /v1/invoices/{id}/finalize",
    ]
    assert [call.endpoint for call in fake.calls if call.path_params.get("id") == invoice_id] == [
        "GET /v1/invoices/{id}",
        "POST /v1/invoices/{id}/finalize",
    ]

    class NoTurn(Exception):
        pass

    def refuse(_endpoint: str) -> None:
        raise NoTurn

    before = len(fake.calls)
    with client(fake, before_request=refuse) as cb, pytest.raises(NoTurn):
        cb.invoice(invoice_id)
    assert len(fake.calls) == before


def test_encode_nests_as_stripe_reads_it() -> None:
    assert encode(
        {
            "customer": "cus_1",
            "auto_advance": False,
            "metadata": {"bill_id": "b1"},
            "period": {"start": 1, "end": 2},
            "expand": ["lines", "customer"],
            "unit_amount_decimal": Decimal("1E-7"),
            "subscription": None,
        }
    ) == [
        ("customer", "cus_1"),
        ("auto_advance", "false"),
        ("metadata[bill_id]", "b1"),
        ("period[start]", "1"),
        ("period[end]", "2"),
        ("expand[0]", "lines"),
        ("expand[1]", "customer"),
        ("unit_amount_decimal", "0.0000001"),
    ]
    with pytest.raises(TypeError, match="not a float"):
        encode({"amount": 1.5})


def test_the_fake_measures_the_busiest_second() -> None:
    fake = FakeStripe()  # not started: only its bookkeeping
    for at in (0.0, 0.2, 0.9, 1.0, 1.1, 1.95, 5.0):
        fake.calls.append(Call("GET", "/v1/x", "GET /v1/x", "x", {}, {}, None, None, at))
    fake.calls.append(Call("POST", "/v1/y", "POST /v1/y", "y", {}, {}, None, None, 0.5))
    assert fake.peak_rate("GET /v1/x") == 4  # 0.2, 0.9, 1.0, 1.1: within [0.2, 1.2)
    assert fake.peak_rate() == 5  # and the POST at 0.5
    assert fake.peak_rate("GET /v1/x", window=0.5) == 3  # 0.9, 1.0, 1.1


def test_a_429_and_a_500_stripe_keeps_have_types_of_their_own(
    fake: FakeStripe, customer: str
) -> None:
    """A 429 is ``RateLimited`` (the limiter pushes the credential back); a 500 Stripe keeps
    under the key, first answered or replayed, is ``KeptFailure`` (only a new key can
    succeed); a plain 500 is neither."""
    with client(fake) as cb:
        fake.fail_next(1, "429", retry_after=2)
        with pytest.raises(RateLimited) as limited:
            cb.list_invoices(customer=customer)
        assert limited.value.retry_after == 2
        fake.fail_next(1, "500")
        with pytest.raises(TransientError) as plain:
            draft(cb, customer, f"{customer}:plain")
        assert not isinstance(plain.value, KeptFailure | RateLimited)
        fake.fail_next(1, "500_saved")
        for _ in range(2):  # the answer, then Stripe's replay of it
            with pytest.raises(KeptFailure):
                draft(cb, customer, f"{customer}:kept")
        assert draft(cb, customer, f"{customer}:kept#1")  # a new key succeeds


def test_client_reads_one_invoice_item_and_none_once_it_is_gone(
    fake: FakeStripe, customer: str
) -> None:
    with client(fake) as cb:
        item = cb.create_invoice_item(
            key=f"{customer}:1",
            customer=customer,
            currency="usd",
            description="usage",
            pricing=ByAmount(100),
            metadata={"meterbridge_line": "7"},
        )
        read = cb.invoice_item(item.id)
        assert read is not None
        assert (read.id, read.pending, read.metadata) == (item.id, True, {"meterbridge_line": "7"})
        assert cb.delete_invoice_item(item.id, key=f"{customer}:1:delete")
        assert cb.invoice_item(item.id) is None
