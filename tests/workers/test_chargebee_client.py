"""Our Chargebee client against the fake, and the fake against Chargebee's own SDK (so the
fake speaks Chargebee, not just what our client expects)."""

from __future__ import annotations

from collections.abc import Iterator

import chargebee
import pytest

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from tests.support.fake_chargebee import API_KEY, FakeChargebee
from workers.destinations.chargebee.client import ChargebeeClient


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChargebee]:
    server = FakeChargebee(hang_seconds=2).start()
    server.price("cbdemo-usage", "cbdemo-standing")
    yield server
    server.stop()


def client(fake: FakeChargebee, key: str = API_KEY, timeout: float = 1.0) -> ChargebeeClient:
    return ChargebeeClient(
        site="acme-test", api_key=key, url_template=fake.url_template, timeout=timeout
    )


def test_the_official_sdk_reads_and_writes_the_fake(
    fake: FakeChargebee, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the SDK only speaks plain HTTP when this class attribute says so
    monkeypatch.setattr(chargebee.Chargebee, "verify_ca_certs", False)
    invoice_id = fake.pending_invoice("cus_sdk")
    cb = chargebee.Chargebee(
        api_key=API_KEY,
        site="127.0.0",
        chargebee_domain=f"1:{fake.port}/acme-test",
        protocol="http",
    )
    listed = cb.Invoice.list({"customer_id": {"is": "cus_sdk"}, "status": {"is": "pending"}})
    assert [entry.invoice.id for entry in listed.list] == [invoice_id]
    added = cb.Invoice.add_charge_item(
        invoice_id,
        {
            "item_price": {
                "item_price_id": "cbdemo-usage",
                "quantity": 3,
                "unit_price": 250,
                "date_from": 1700000000,
                "date_to": 1700086399,
            }
        },
    )
    [line] = added.invoice.line_items
    assert (line.entity_id, line.quantity, line.unit_amount, line.amount) == (
        "cbdemo-usage",
        3,
        250,
        750,
    )
    with pytest.raises(chargebee.InvalidRequestError) as raised:
        cb.Invoice.add_charge_item(invoice_id, {"item_price": {"item_price_id": "nope"}})
    assert raised.value.api_error_code == "resource_not_found"


def test_client_adds_and_deletes_lines_idempotently(fake: FakeChargebee) -> None:
    invoice_id = fake.pending_invoice("cus_client")
    with client(fake) as cb:
        found = cb.pending_invoice("cus_client")
        assert found is not None
        assert found.id == invoice_id
        form = {"item_price[item_price_id]": "cbdemo-usage", "item_price[quantity]": "2"}
        first = cb.add_charge_item(invoice_id, form, "key-1")
        again = cb.add_charge_item(invoice_id, form, "key-1")
        assert first.line_ids == again.line_ids
        assert len(fake.lines(invoice_id)) == 1
        assert len(fake.applied("add_charge_item", invoice_id)) == 1
        emptied = cb.delete_line_items(invoice_id, list(first.line_ids), "key-2")
        assert emptied.line_items == []


def test_client_turns_answers_into_error_types(fake: FakeChargebee) -> None:
    invoice_id = fake.pending_invoice("cus_errors")
    form = {"item_price[item_price_id]": "cbdemo-usage"}
    with client(fake, key="wrong") as cb, pytest.raises(AuthenticationFailed):
        cb.invoice(invoice_id)
    with client(fake) as cb:
        with pytest.raises(PerformFailed, match="resource_not_found"):
            cb.add_charge_item(invoice_id, {"item_price[item_price_id]": "missing"}, "k-3")
        fake.fail_next(1, "500")
        with pytest.raises(TransientError):
            cb.add_charge_item(invoice_id, form, "k-4")
        fake.fail_next(1, "429", retry_after=7)
        with pytest.raises(TransientError) as limited:
            cb.add_charge_item(invoice_id, form, "k-5")
        assert limited.value.retry_after == 7
        fake.fail_next(1, "hang")
        with pytest.raises(TransientError, match="in time"):
            cb.add_charge_item(invoice_id, form, "k-6")
    assert fake.lines(invoice_id) == []
    with (
        ChargebeeClient(
            site="x", api_key="k", url_template="http://127.0.0.1:1/{site}", timeout=1
        ) as cb,
        pytest.raises(TransientError, match="cannot reach"),
    ):
        cb.invoice("inv_1")
