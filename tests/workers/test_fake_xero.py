"""The fake Xero against Xero's own Python SDK (``xero-python``), so the fake speaks Xero
and not just what our client expects; raw HTTP where the SDK cannot show a detail (headers,
missing tenant, concurrency)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import urllib3

# xero-python ships no type information (no py.typed).
from xero_python.accounting import (  # type: ignore[import-untyped]
    AccountingApi,
    Contact,
    Invoice,
    Invoices,
    LineItem,
)
from xero_python.api_client import ApiClient, Configuration  # type: ignore[import-untyped]
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi  # type: ignore[import-untyped]
from xero_python.exceptions import (  # type: ignore[import-untyped]
    AccountingBadRequestException,
    ApiException,
    NotFoundException,
    RateLimitException,
)
from xero_python.identity import IdentityApi  # type: ignore[import-untyped]

from tests.support.fake_xero import PROBLEM_CONCURRENT, PROBLEM_DAY, PROBLEM_MINUTE, FakeXero

DUE = date.today() + timedelta(days=30)
_keys = itertools.count(1)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeXero]:
    server = FakeXero(hang_seconds=1.0).start()
    server.item("USAGE", description="API calls", unit_price="0.0125")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def token_urls(fake: FakeXero, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's token URLs are class attributes of TokenApi: point them at the fake."""
    monkeypatch.setattr(TokenApi, "refresh_token_url", fake.token_url)
    monkeypatch.setattr(TokenApi, "client_credentials_token_url", fake.token_url)


class Sdk:
    """An AccountingApi on the fake with a token store, as an app would wire it."""

    def __init__(self, fake: FakeXero, *, retries: bool = False) -> None:
        self.token: dict[str, Any] = sdk_token(fake.tokens())
        oauth2 = OAuth2Token(client_id=fake.client_id, client_secret=fake.client_secret)
        self.client = ApiClient(Configuration(oauth2_token=oauth2), pool_threads=1)
        if not retries:  # urllib3 would retry GET and PUT on 429 + Retry-After and timeouts
            self.client.rest_client.pool_manager = urllib3.PoolManager(retries=False)
        self.client.oauth2_token_getter(lambda: self.token)
        self.client.oauth2_token_saver(self._save)
        self.accounting = AccountingApi(self.client, base_url=fake.api_url)
        self.identity = IdentityApi(self.client, base_url=fake.base_url)

    def _save(self, token: dict[str, Any]) -> None:
        self.token = token


def sdk_token(token: dict[str, Any]) -> dict[str, Any]:
    """The fake's token answer as the SDK keeps it: scope a list, expires_at set."""
    keep = ("access_token", "refresh_token", "token_type", "expires_in", "id_token")
    kept = {name: token[name] for name in keep if name in token}
    kept["scope"] = str(token.get("scope", "")).split()
    kept["expires_at"] = time.time() + float(token["expires_in"])
    return kept


def key() -> str:
    return f"bill-{next(_keys)}:v1"


def draft(contact_id: str, *lines: LineItem, **fields: Any) -> Invoices:
    invoice = Invoice(
        type="ACCREC",
        contact=Contact(contact_id=contact_id),
        line_items=list(lines),
        date=date.today(),
        **fields,
    )
    return Invoices(invoices=[invoice])


def usage(quantity: str = "3", unit: str = "0.1235", account_code: str = "200") -> LineItem:
    return LineItem(
        description="API calls",
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit),
        account_code=account_code,
    )


def http(fake: FakeXero, token: str | None = None, **headers: str) -> httpx.Client:
    base = {"Accept": "application/json", "xero-tenant-id": fake.tenant_id}
    if token is not None:
        base["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=fake.api_url, headers={**base, **headers}, timeout=5)


# --- invoices through the SDK --------------------------------------------------------------


def test_the_sdk_creates_updates_and_reads_an_invoice_at_4_dp(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Acme")
    created = sdk.accounting.create_invoices(
        fake.tenant_id,
        draft(customer, usage(), reference="bill-1", due_date=DUE),
        unitdp=4,
        idempotency_key=key(),
    ).invoices[0]
    assert created.status == "DRAFT"
    assert created.reference == "bill-1"
    assert created.invoice_number.startswith("INV-")
    assert created.due_date == DUE
    (line,) = created.line_items
    assert (line.quantity, line.unit_amount, line.line_amount) == (
        3,
        Decimal("0.1235"),
        Decimal("0.37"),
    )
    assert (created.sub_total, created.total_tax, created.total) == (
        Decimal("0.37"),
        0,
        Decimal("0.37"),
    )

    update = Invoice(
        line_items=[
            usage("1000", "0.0125"),
            LineItem(item_code="USAGE", quantity=Decimal("7")),
        ]
    )
    updated = sdk.accounting.update_invoice(
        fake.tenant_id,
        created.invoice_id,
        Invoices(invoices=[update]),
        unitdp=4,
        idempotency_key=key(),
    ).invoices[0]
    assert [li.line_amount for li in updated.line_items] == [Decimal("12.5"), Decimal("0.09")]
    assert updated.line_items[1].description == "API calls"  # from the item
    assert line.line_item_id not in {li.line_item_id for li in updated.line_items}  # replaced
    assert updated.total == Decimal("12.59")

    again = sdk.accounting.get_invoice(fake.tenant_id, created.invoice_id, unitdp=4)
    assert [li.unit_amount for li in again.invoices[0].line_items] == [
        Decimal("0.0125"),
        Decimal("0.0125"),
    ]
    at_2dp = sdk.accounting.get_invoice(fake.tenant_id, created.invoice_id)
    assert [li.unit_amount for li in at_2dp.invoices[0].line_items] == [
        Decimal("0.01"),
        Decimal("0.01"),
    ]
    assert at_2dp.invoices[0].total == Decimal("12.59")  # amounts keep the stored 4 dp


def test_without_unitdp_unit_amounts_are_kept_at_2_dp(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Two Places")
    created = sdk.accounting.create_invoices(
        fake.tenant_id, draft(customer, usage("3", "0.1250")), idempotency_key=key()
    ).invoices[0]
    assert created.line_items[0].unit_amount == Decimal("0.13")
    assert created.line_items[0].line_amount == Decimal("0.39")
    stored = fake.invoice(created.invoice_id)["LineItems"][0]
    assert stored["UnitAmount"] == 0.13

    four = sdk.accounting.create_invoices(
        fake.tenant_id, draft(customer, usage("3", "0.1250")), unitdp=4
    ).invoices[0]
    # An update without unitdp=4 re-keeps the lines at 2 dp, even one sending no lines.
    sdk.accounting.update_invoice(
        fake.tenant_id, four.invoice_id, Invoices(invoices=[Invoice(reference="x")])
    )
    assert fake.invoice(four.invoice_id)["LineItems"][0]["UnitAmount"] == 0.13


def test_an_idempotency_key_replays_the_first_answer_and_writes_nothing(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Replayed")
    same = key()
    body = draft(customer, usage(), reference="bill-replay")
    first = sdk.accounting.create_invoices(fake.tenant_id, body, unitdp=4, idempotency_key=same)
    writes = len(fake.writes())
    second = sdk.accounting.create_invoices(fake.tenant_id, body, unitdp=4, idempotency_key=same)
    assert second.invoices[0].invoice_id == first.invoices[0].invoice_id
    assert len(fake.writes()) == writes
    assert fake.calls[-1].replayed
    assert [i["Reference"] for i in fake.invoices()].count("bill-replay") == 1

    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(
            fake.tenant_id,
            draft(customer, usage(), reference="another"),
            unitdp=4,
            idempotency_key=same,
        )
    assert "different request" in raised.value.reason
    with pytest.raises(AccountingBadRequestException):
        sdk.accounting.create_invoices(fake.tenant_id, body, idempotency_key="k" * 129)


def test_validation_errors_surface_as_the_sdks_exception(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Strict")
    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(
            fake.tenant_id, draft(customer, usage(), status="AUTHORISED"), unitdp=4
        )
    assert raised.value.status == 400
    assert raised.value.reason == "The document DueDate field must be specified."
    error = raised.value.error_data
    assert (error["ErrorNumber"], error["Type"]) == (10, "ValidationException")
    assert error["Message"] == "A validation exception occurred"
    assert error["Elements"][0]["HasErrors"] is True

    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(fake.tenant_id, draft(customer, usage(account_code="999")))
    assert raised.value.reason == "Account code '999' is not a valid code for this document."
    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(
            fake.tenant_id, draft("00000000-0000-0000-0000-000000000001", usage())
        )
    assert "ContactID" in raised.value.reason
    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(
            fake.tenant_id, draft(customer, LineItem(item_code="NOPE", quantity=Decimal(1)))
        )
    assert "Item code 'NOPE'" in raised.value.reason
    number = fake.invoices()[0]["InvoiceNumber"]
    with pytest.raises(AccountingBadRequestException) as raised:
        sdk.accounting.create_invoices(
            fake.tenant_id, draft(customer, usage(), invoice_number=number)
        )
    assert raised.value.reason == "Invoice # must be unique."
    with pytest.raises(NotFoundException):
        sdk.accounting.get_invoice(fake.tenant_id, "00000000-0000-0000-0000-000000000002")


def test_summarize_errors_false_writes_the_valid_invoices(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Batch")
    good = Invoice(
        type="ACCREC", contact=Contact(contact_id=customer), line_items=[usage()], reference="ok"
    )
    bad = Invoice(type="ACCREC", contact=Contact(contact_id=customer), status="AUTHORISED")
    answer = sdk.accounting.create_invoices(
        fake.tenant_id, Invoices(invoices=[good, bad]), summarize_errors=False
    )
    assert [i.status_attribute_string for i in answer.invoices] == ["OK", "ERROR"]
    assert answer.invoices[1].validation_errors[0].message == (
        "The document DueDate field must be specified."
    )
    fake.invoice(answer.invoices[0].invoice_id)
    with pytest.raises(KeyError):
        fake.invoice(answer.invoices[1].invoice_id)


def test_status_rules_void_delete_and_paid(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Lifecycle")
    tenant = fake.tenant_id

    def make(status: str) -> str:
        invoices = draft(customer, usage("2", "10"), status=status, due_date=DUE)
        created = sdk.accounting.create_invoices(tenant, invoices, unitdp=4)
        return str(created.invoices[0].invoice_id)

    def move(invoice_id: str, **fields: Any) -> Invoice:
        answer = sdk.accounting.update_invoice(
            tenant, invoice_id, Invoices(invoices=[Invoice(**fields)]), unitdp=4
        )
        return answer.invoices[0]

    assert move(make("DRAFT"), status="DELETED").status == "DELETED"
    assert move(make("SUBMITTED"), status="DELETED").status == "DELETED"
    authorised = make("AUTHORISED")
    with pytest.raises(AccountingBadRequestException, match="cannot become DELETED"):
        move(authorised, status="DELETED")
    with pytest.raises(AccountingBadRequestException) as raised:
        move(authorised, line_items=[usage("3", "10")])
    assert "AUTHORISED invoice cannot change" in raised.value.reason
    same_lines = fake.invoice(authorised)["LineItems"]
    resent = [
        LineItem(
            line_item_id=li["LineItemID"],
            description=li["Description"],
            quantity=Decimal(str(li["Quantity"])),
            unit_amount=Decimal(str(li["UnitAmount"])),
            account_code=li["AccountCode"],
        )
        for li in same_lines
    ]
    assert move(authorised, status="VOIDED", line_items=resent).status == "VOIDED"
    with pytest.raises(AccountingBadRequestException, match="VOIDED invoice"):
        move(authorised, reference="after void")

    paid = make("AUTHORISED")
    fake.pay(paid, "5.00")
    with pytest.raises(AccountingBadRequestException) as raised:
        move(paid, status="VOIDED")
    assert raised.value.reason == (
        "This document cannot be edited as it has a payment or credit note allocated to it."
    )
    fake.pay(paid, "15.00")
    assert fake.invoice(paid)["Status"] == "PAID"
    assert fake.invoice(paid)["AmountDue"] == 0


def test_an_invoice_is_found_again_by_reference_or_number(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Lost Answer")
    sdk.accounting.create_invoices(
        fake.tenant_id,
        draft(customer, usage(), reference="bill-77:v2", invoice_number="MB-77"),
        unitdp=4,
    )
    by_reference = sdk.accounting.get_invoices(
        fake.tenant_id, where='Reference=="bill-77:v2"', page=1, unitdp=4
    )
    (found,) = by_reference.invoices
    assert found.invoice_number == "MB-77"
    assert found.line_items[0].unit_amount == Decimal("0.1235")
    assert by_reference.pagination.item_count == 1
    by_number = sdk.accounting.get_invoices(fake.tenant_id, invoice_numbers=["MB-77"])
    assert [i.invoice_id for i in by_number.invoices] == [found.invoice_id]
    assert by_number.invoices[0].line_items == []  # unpaged: no lines
    combined = sdk.accounting.get_invoices(
        fake.tenant_id,
        where=f'Contact.ContactID==Guid("{customer}") AND Status=="DRAFT"',
        page=1,
    )
    assert [i.invoice_id for i in combined.invoices] == [found.invoice_id]


def test_post_invoices_updates_by_invoice_number(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Upsert")
    body = draft(customer, usage(), invoice_number="MB-UPSERT")
    first = sdk.accounting.update_or_create_invoices(fake.tenant_id, body, unitdp=4)
    body.invoices[0].line_items = [usage("1", "2")]
    second = sdk.accounting.update_or_create_invoices(fake.tenant_id, body, unitdp=4)
    assert second.invoices[0].invoice_id == first.invoices[0].invoice_id
    assert second.invoices[0].total == Decimal("2")
    with pytest.raises(AccountingBadRequestException, match="must be unique"):
        sdk.accounting.create_invoices(fake.tenant_id, body)


# --- auth, tenants, connections -------------------------------------------------------------


def test_the_sdk_refreshes_an_expired_token_and_rotates_the_refresh_token(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    old_refresh = sdk.token["refresh_token"]
    sdk.token["expires_at"] = time.time() - 1  # the SDK refreshes before the call
    refreshes = fake.auth.refreshes
    answer = sdk.accounting.get_invoices(fake.tenant_id, page=1)
    assert answer.invoices is not None
    assert fake.auth.refreshes == refreshes + 1
    assert sdk.token["refresh_token"] != old_refresh

    fake.auth.expire_access_tokens()  # the SDK still thinks its token is good
    with pytest.raises(ApiException) as raised:
        sdk.accounting.get_invoices(fake.tenant_id, page=1)
    assert raised.value.status == 401
    assert b"TokenExpired: token expired at" in raised.value.body


def test_identity_and_tenant_errors(fake: FakeXero) -> None:
    token = fake.tokens()["access_token"]
    with http(fake, token) as client:
        assert client.get("/Invoices").status_code == 200
        missing = client.get("/Invoices", headers={"xero-tenant-id": ""})
        assert missing.status_code == 403
        assert missing.json()["Detail"] == "AuthenticationUnsuccessful"
        unknown = client.get("/Invoices", headers={"xero-tenant-id": "not-a-tenant"})
        assert unknown.status_code == 403
        xml = client.get("/Invoices", headers={"Accept": "*/*"})
        assert xml.status_code == 406
    with http(fake, "not-a-token") as client:
        answer = client.get("/Invoices")
        assert (answer.status_code, answer.json()["Detail"]) == (401, "AuthenticationUnsuccessful")
    narrow = fake.tokens(scope="openid offline_access accounting.contacts")["access_token"]
    with http(fake, narrow) as client:
        assert client.get("/Invoices").json()["Detail"] == "AuthorizationUnsuccessful"
    assert "refresh_token" not in fake.tokens(scope="openid accounting.transactions")


def test_connections_list_the_tenants(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    connections = sdk.identity.get_connections()
    tenants = {c.tenant_id: c for c in connections}
    assert fake.tenant_id in {str(t) for t in tenants}
    first = next(c for c in connections if str(c.tenant_id) == fake.tenant_id)
    assert (first.tenant_type, first.tenant_name) == ("ORGANISATION", fake.tenant_name)


def test_a_custom_connection_needs_no_tenant_header(fake: FakeXero) -> None:
    oauth2 = OAuth2Token(client_id=fake.client_id, client_secret=fake.client_secret)
    client = ApiClient(Configuration(oauth2_token=oauth2), pool_threads=1)
    store: dict[str, Any] = {}
    client.oauth2_token_getter(lambda: store["token"])
    client.oauth2_token_saver(lambda token: store.update(token=token))
    client.get_client_credentials_token()
    assert "refresh_token" not in store["token"] or store["token"]["refresh_token"] is None
    answer = AccountingApi(client, base_url=fake.api_url).get_invoices("", page=1)
    assert answer.invoices is not None


def test_a_second_tenant_is_separate_and_can_be_disconnected(fake: FakeXero) -> None:
    other = fake.add_tenant("Second Org")
    sdk = Sdk(fake)
    customer = fake.contact("Elsewhere", tenant_id=other)
    created = sdk.accounting.create_invoices(other, draft(customer, usage()), unitdp=4)
    assert [i["InvoiceID"] for i in fake.invoices(other)] == [str(created.invoices[0].invoice_id)]
    with pytest.raises(AccountingBadRequestException):  # the contact is not in the first org
        sdk.accounting.create_invoices(fake.tenant_id, draft(customer, usage()))
    fake.disconnect(other)
    with pytest.raises(ApiException) as raised:
        sdk.accounting.get_invoices(other, page=1)
    assert raised.value.status == 403


# --- limits and faults ---------------------------------------------------------------------


def test_the_minute_and_day_limits_answer_429() -> None:
    fake = FakeXero(calls_per_minute=3, minute_seconds=0.5, calls_per_day=5).start()
    try:
        sdk = Sdk(fake)
        remaining = []
        with http(fake, sdk.token["access_token"]) as client:
            for _ in range(3):
                remaining.append(client.get("/Invoices").headers["X-MinLimit-Remaining"])
            over = client.get("/Invoices")
        assert remaining == ["2", "1", "0"]
        assert over.status_code == 429
        assert over.headers["X-Rate-Limit-Problem"] == PROBLEM_MINUTE
        assert over.headers["Retry-After"] == "1"
        with pytest.raises(RateLimitException) as raised:
            sdk.accounting.get_invoices(fake.tenant_id)
        assert raised.value.rate_limit == PROBLEM_MINUTE
        time.sleep(0.55)
        sdk.accounting.get_invoices(fake.tenant_id)
        sdk.accounting.get_invoices(fake.tenant_id)
        with pytest.raises(RateLimitException) as raised:
            sdk.accounting.get_invoices(fake.tenant_id)
        assert raised.value.rate_limit == PROBLEM_DAY
        assert raised.value.headers["X-DayLimit-Remaining"] == "0"
    finally:
        fake.stop()


def test_more_than_the_concurrent_limit_answers_429_and_is_recorded() -> None:
    fake = FakeXero(concurrent_calls=2, latency=0.4).start()
    try:
        token = fake.tokens()["access_token"]
        statuses: list[tuple[int, str | None]] = []

        def call() -> None:
            with http(fake, token) as client:
                answer = client.get("/Invoices")
                statuses.append((answer.status_code, answer.headers.get("X-Rate-Limit-Problem")))

        threads = [threading.Thread(target=call) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses, key=str) == [(200, None), (200, None), (429, PROBLEM_CONCURRENT)]
        assert fake.max_concurrent() == 3
    finally:
        fake.stop()


def test_the_sdk_itself_retries_a_429_on_get_after_retry_after(fake: FakeXero) -> None:
    """Not the fake's doing: xero-python's urllib3 PoolManager keeps urllib3's default
    Retry, which honours Retry-After on 429 for GET and PUT (not POST)."""
    sdk = Sdk(fake, retries=True)
    fake.fail_next(1, "429", retry_after=1)
    started = time.monotonic()
    sdk.accounting.get_invoices(fake.tenant_id)
    assert time.monotonic() - started >= 1
    assert [c.status for c in fake.calls[-2:]] == [429, 200]


def test_faults(fake: FakeXero) -> None:
    sdk = Sdk(fake)
    customer = fake.contact("Faulty")
    tenant = fake.tenant_id
    body = draft(customer, usage(), reference="bill-faults")

    fake.fail_next(1, "500")
    with pytest.raises(ApiException) as raised:
        sdk.accounting.create_invoices(tenant, body, unitdp=4, idempotency_key=key())
    assert raised.value.status == 500
    assert b"UnknownErrorException" in raised.value.body

    fake.fail_next(1, "429", retry_after=7)
    with pytest.raises(RateLimitException) as raised:
        sdk.accounting.get_invoices(tenant)
    assert raised.value.headers["Retry-After"] == "7"

    fake.fail_next(1, "401")
    with pytest.raises(ApiException) as raised:
        sdk.accounting.get_invoices(tenant)
    assert raised.value.status == 401

    fake.fail_next(1, "hang")
    with pytest.raises(Exception, match=r"[Tt]imed? ?out"):
        sdk.accounting.create_invoices(
            tenant, body, idempotency_key=key(), _request_timeout=(1, 0.3)
        )
    assert "bill-faults" not in [i["Reference"] for i in fake.invoices()]

    lost = key()
    fake.fail_next(1, "apply_then_hang")
    with pytest.raises(Exception, match=r"[Tt]imed? ?out"):
        sdk.accounting.create_invoices(
            tenant, body, unitdp=4, idempotency_key=lost, _request_timeout=(1, 0.3)
        )
    retried = sdk.accounting.create_invoices(tenant, body, unitdp=4, idempotency_key=lost)
    assert [i["Reference"] for i in fake.invoices()].count("bill-faults") == 1
    assert retried.invoices[0].reference == "bill-faults"

    saved = key()
    fake.fail_next(1, "500_saved")
    for _ in range(2):
        with pytest.raises(ApiException) as raised:
            sdk.accounting.create_invoices(tenant, body, idempotency_key=saved)
        assert raised.value.status == 500
    assert fake.calls[-1].replayed
    with pytest.raises(ValueError, match="unknown fault"):
        fake.fail_next(1, "503")
