"""meterbridge's QuickBooks client against the fake QuickBooks Online: every write with
``minorversion=75`` and a ``requestid`` (a repeat is answered, not done again), sparse
updates at the current ``SyncToken``, and QuickBooks' answers as the types the retry
policy reads. Also ``sync.replace_lines``: one more try after a stale ``SyncToken``, and
never a change to an invoice with a payment applied."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from domain.destinations.quickbooks import QuickBooksCredential
from domain.destinations.quickbooks.items import QuickBooksLine
from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from domain.settings import Settings
from tests.support.fake_quickbooks import FakeQuickBooks
from workers.connections.http import AuthorizedClient
from workers.destinations.quickbooks.client import (
    QuickBooksClient,
    QuickBooksFault,
    StaleSyncToken,
    api_base,
)
from workers.destinations.quickbooks.sync import replace_lines
from workers.destinations.turns import RemoteLimited


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeQuickBooks]:
    server = FakeQuickBooks(hang_seconds=1).start()
    yield server
    server.stop()


class StaticToken:
    """An access token the fake issued for the company, without the database."""

    def __init__(self, token: str) -> None:
        self.token = token

    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        return f"Bearer {self.token}", 1


def client_for(fake: FakeQuickBooks, realm: str | None = None) -> QuickBooksClient:
    token = fake.tokens(realm)["access_token"]
    http = AuthorizedClient(fake.base_url, StaticToken(token), 0.5, title="QuickBooks")
    return QuickBooksClient(http, realm or fake.realm_id)


@pytest.fixture
def client(fake: FakeQuickBooks) -> QuickBooksClient:
    return client_for(fake)


@pytest.fixture
def customer(fake: FakeQuickBooks) -> str:
    return fake.customer(f"Customer {uuid.uuid4().hex[:8]}")


@pytest.fixture
def item(fake: FakeQuickBooks) -> str:
    return fake.item("Usage")


def line(item: str, qty: str, price: str, amount: str) -> dict[str, Any]:
    made = QuickBooksLine(
        "1", "Usage", Decimal(qty), Decimal(price), Decimal(amount), item, date(2026, 10, 1)
    )
    return made.line()


def invoice(customer: str, *lines: dict[str, Any]) -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer},
        "CurrencyRef": {"value": "USD"},
        "TxnDate": "2026-11-01",
        "DueDate": "2026-12-01",
        "PrivateNote": "meterbridge bill bill_1",
        "Line": list(lines),
    }


def rid() -> str:
    return f"run_{uuid.uuid4().hex}:create"[:50]


def test_a_creation_names_its_requestid_and_a_repeat_is_answered_not_done_again(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    request_id = rid()
    body = invoice(customer, line(item, "1234", "0.0125", "15.43"))

    created = client.create_invoice(body, request_id)
    again = client.create_invoice(body, request_id)

    assert again == created
    assert (created.sync_token, created.customer_id, created.total) == (
        "0",
        customer,
        Decimal("15.43"),
    )
    assert len(created.line_ids) == 1  # the SubTotalLine QuickBooks adds is not a line
    calls = [c for c in fake.calls_to("create_invoice") if c.request_id == request_id]
    assert [(c.minorversion, c.replayed) for c in calls] == [("75", False), ("75", True)]
    assert len([c for c in fake.applied("create_invoice") if c.request_id == request_id]) == 1
    stored = fake.invoice(fake.realm_id, created.id)
    assert stored["Line"][0]["SalesItemLineDetail"]["UnitPrice"] == Decimal("0.0125")


def test_an_update_at_the_current_sync_token_replaces_the_lines_and_keeps_the_rest(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    created = client.create_invoice(invoice(customer, line(item, "1", "5", "5.00")), rid())

    updated = client.update_invoice(
        created.id,
        created.sync_token,
        {"Line": [line(item, "2", "3", "6.00"), line(item, "1", "4", "4.00")]},
        rid(),
    )

    assert (updated.id, updated.sync_token, updated.total) == (created.id, "1", Decimal("10.00"))
    stored = fake.invoice(fake.realm_id, created.id)
    assert [li["Amount"] for li in stored["Line"][:-1]] == [Decimal("6.00"), Decimal("4.00")]
    assert (stored["DueDate"], stored["PrivateNote"]) == ("2026-12-01", "meterbridge bill bill_1")


def test_an_update_at_a_stale_sync_token_is_transient_and_changes_nothing(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    created = client.create_invoice(invoice(customer, line(item, "1", "5", "5.00")), rid())
    client.update_invoice(created.id, "0", {"PrivateNote": "a person's note"}, rid())

    with pytest.raises(StaleSyncToken, match="Stale Object Error") as raised:
        client.update_invoice(created.id, "0", {"Line": [line(item, "1", "9", "9.00")]}, rid())

    assert isinstance(raised.value, TransientError)
    assert fake.invoice(fake.realm_id, created.id)["TotalAmt"] == Decimal("5.00")


def test_replacing_lines_reads_a_stale_invoice_again_and_tries_once_more(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    created = client.create_invoice(invoice(customer, line(item, "1", "5", "5.00")), rid())
    client.update_invoice(created.id, "0", {"PrivateNote": "a person's note"}, rid())
    tried: list[str] = []

    def request_id(read: Any) -> str:
        tried.append(read.sync_token)
        return rid()

    updated = replace_lines(
        client,
        created,  # as read before the person's change: SyncToken 0
        {"Line": [line(item, "1", "9", "9.00")]},
        customer_id=customer,
        request_id=request_id,
    )

    assert (updated.sync_token, updated.total) == ("2", Decimal("9.00"))
    assert tried == ["0", "1"]
    assert fake.invoice(fake.realm_id, created.id)["PrivateNote"] == "a person's note"


def test_replacing_lines_never_touches_an_invoice_with_a_payment(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    created = client.create_invoice(invoice(customer, line(item, "1", "40", "40.00")), rid())
    fake.pay(created.id, Decimal("15"))
    paid = client.invoice(created.id)
    assert paid is not None
    assert (paid.balance, paid.paid) == (Decimal("25.00"), Decimal("15.00"))

    with pytest.raises(PerformFailed, match=r"payment applied \(15.00 of 40.00 paid\)"):
        replace_lines(
            client,
            paid,
            {"Line": [line(item, "1", "9", "9.00")]},
            customer_id=customer,
            request_id=lambda _: rid(),
        )
    assert [c for c in fake.calls_to("update_invoice") if c.body.get("Id") == created.id] == []


def test_a_fault_is_perform_failed_with_quickbooks_own_message(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    before = len(fake.invoices())
    with pytest.raises(QuickBooksFault) as mismatch:
        client.create_invoice(invoice(customer, line(item, "3", "10", "30.01")), rid())
    assert isinstance(mismatch.value, PerformFailed)
    assert mismatch.value.codes == ("6070",)
    assert str(mismatch.value) == (
        f"QuickBooks refused POST /v3/company/{fake.realm_id}/invoice: Amount is not equal"
        " to UnitPrice * Qty. Supplied value:30.01 (6070, Line.Amount)"
    )

    with pytest.raises(PerformFailed, match=r"Invalid Reference Id : Items element id 999999"):
        client.create_invoice(invoice(customer, line("999999", "1", "5", "5.00")), rid())
    assert len(fake.invoices()) == before


def test_throttles_server_errors_and_another_company_are_told_apart(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    body = invoice(customer, line(item, "1", "5", "5.00"))
    fake.fail_next(1, "429", operation="create_invoice")
    with pytest.raises(RemoteLimited, match="ThrottleExceeded"):
        client.create_invoice(body, rid())

    fake.fail_next(1, "500", operation="create_invoice")
    with pytest.raises(TransientError, match="answered 500"):
        client.create_invoice(body, rid())

    fake.fail_next(1, "hang", operation="create_invoice")
    with pytest.raises(TransientError, match="did not answer"):
        client.create_invoice(body, rid())

    # the token opens its own company only
    token = fake.tokens()["access_token"]
    http = AuthorizedClient(fake.base_url, StaticToken(token), 1, title="QuickBooks")
    with pytest.raises(AuthenticationFailed, match=r"refused access to the company.*\(403\)"):
        QuickBooksClient(http, fake.company()).invoice("1")


def test_a_deleted_invoice_reads_as_none_and_a_customer_s_newest_come_first(
    fake: FakeQuickBooks, client: QuickBooksClient, customer: str, item: str
) -> None:
    first = client.create_invoice(invoice(customer, line(item, "1", "5", "5.00")), rid())
    second = client.create_invoice(invoice(customer, line(item, "1", "6", "6.00")), rid())
    client.create_invoice(invoice(fake.customer("Someone else"), line(item, "1", "1", "1")), rid())
    token = fake.tokens()["access_token"]
    deleted = httpx.post(
        f"{fake.api_url}/company/{fake.realm_id}/invoice",
        params={"operation": "delete", "minorversion": "75"},
        json={"Id": first.id, "SyncToken": first.sync_token},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    assert deleted.status_code == 200, deleted.text

    assert client.invoice(first.id) is None
    assert [i.id for i in client.newest_invoices_of(customer)] == [second.id]
    assert client.newest_invoices_of("no ' such") == []


def test_a_sandbox_credential_reaches_the_sandbox_and_the_limits_are_intuit_s() -> None:
    settings = Settings(
        _env_file=None,
        quickbooks_api_base="https://production.example",
        quickbooks_sandbox_api_base="https://sandbox.example",
    )
    fields = {"client_id": "app", "client_secret": "secret"}
    production = QuickBooksCredential.model_validate(fields)
    sandbox = QuickBooksCredential.model_validate({**fields, "environment": "sandbox"})
    assert api_base(settings, production) == "https://production.example"
    assert api_base(settings, sandbox) == "https://sandbox.example"
    assert (production.calls_per_minute, production.concurrent_calls) == (500, 10)
    assert production.scopes == ["com.intuit.quickbooks.accounting"]
    assert production.secrets() == {"client_secret": "secret"}
    assert "client_secret" not in production.public()
    with pytest.raises(ValueError, match="less than or equal to 10"):
        QuickBooksCredential.model_validate({**fields, "concurrent_calls": 11})
