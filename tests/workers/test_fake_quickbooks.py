"""The fake QuickBooks Online against Intuit's own OAuth client (intuit-oauth's
``intuitlib``) and the python-quickbooks SDK, so the fake speaks QuickBooks and not just
what our client expects; and its throttles, replays and faults, seen on the wire."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from intuitlib.client import AuthClient  # type: ignore[import-untyped]
from intuitlib.enums import Scopes  # type: ignore[import-untyped]
from intuitlib.exceptions import AuthClientError  # type: ignore[import-untyped]
from quickbooks import QuickBooks  # type: ignore[import-untyped]
from quickbooks.exceptions import (  # type: ignore[import-untyped]
    AuthorizationException,
    ObjectNotFoundException,
    QuickbooksException,
    SevereException,
    ValidationException,
)
from quickbooks.objects.base import Ref  # type: ignore[import-untyped]
from quickbooks.objects.customer import Customer  # type: ignore[import-untyped]
from quickbooks.objects.detailline import (  # type: ignore[import-untyped]
    SalesItemLine,
    SalesItemLineDetail,
)
from quickbooks.objects.invoice import Invoice  # type: ignore[import-untyped]
from quickbooks.objects.item import Item  # type: ignore[import-untyped]

from tests.support.fake_quickbooks import (
    ACCESS_TOKEN_SECONDS,
    CLIENT_ID,
    CLIENT_SECRET,
    HARD_EXPIRY_HEADER,
    REFRESH_TOKEN_HARD_SECONDS,
    REFRESH_TOKEN_SECONDS,
    FakeQuickBooks,
)

REDIRECT_URI = "https://meterbridge.example/connections/quickbooks/callback"
JSON = {"Accept": "application/json", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeQuickBooks]:
    server = FakeQuickBooks(hang_seconds=0.5).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests-oauthlib (under python-quickbooks) refuses http:// unless told otherwise."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def customer(fake: FakeQuickBooks) -> str:
    return fake.customer(f"Customer {uuid.uuid4().hex[:8]}")


@pytest.fixture
def item(fake: FakeQuickBooks) -> str:
    return fake.item("Usage")


def auth_client(fake: FakeQuickBooks, **tokens: Any) -> AuthClient:
    return AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, fake.discovery_url, **tokens)


def sdk(fake: FakeQuickBooks, realm: str | None = None) -> QuickBooks:
    realm = realm or fake.realm_id
    tokens = fake.tokens(realm)
    auth = auth_client(
        fake,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        realm_id=realm,
    )
    client = QuickBooks(
        auth_client=auth,
        refresh_token=tokens["refresh_token"],
        company_id=realm,
        minorversion=75,
        use_decimal=True,
    )
    client.api_url_v3 = client.sandbox_api_url_v3 = fake.api_url
    return client


def ref(value: str) -> Ref:
    reference = Ref()
    reference.value = value
    return reference


def sales_line(item: str, amount: str, qty: str | None = None, price: str | None = None) -> Any:
    line = SalesItemLine()
    line.Amount = Decimal(amount)
    line.Description = "API calls"
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = ref(item)
    if qty is not None:
        line.SalesItemLineDetail.Qty = Decimal(qty)
    if price is not None:
        line.SalesItemLineDetail.UnitPrice = Decimal(price)
    return line


def new_invoice(customer: str, *lines: Any, doc_number: str | None = None) -> Any:
    invoice = Invoice()
    invoice.CustomerRef = ref(customer)
    invoice.DocNumber = doc_number
    invoice.PrivateNote = "meterbridge bill"
    invoice.TxnDate = "2026-01-31"
    invoice.DueDate = "2026-02-28"
    invoice.Line.extend(lines)
    return invoice


def bearer(fake: FakeQuickBooks, realm: str | None = None) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {fake.tokens(realm)['access_token']}"}


def basic() -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def raw_invoice(customer: str, item: str, **fields: Any) -> dict[str, Any]:
    line = {
        "Amount": 25,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item}, "Qty": 2.5, "UnitPrice": 10},
    }
    return {"CustomerRef": {"value": customer}, "Line": [line], **fields}


# --- OAuth, as intuit-oauth sees it -------------------------------------------------------


def test_intuitlib_reads_the_discovery_document_exchanges_a_code_and_refreshes(
    fake: FakeQuickBooks,
) -> None:
    auth = auth_client(fake)
    assert auth.token_endpoint == f"{fake.base_url}/oauth2/v1/tokens/bearer"
    assert auth.auth_endpoint == f"{fake.base_url}/connect/oauth2"

    consent = httpx.get(auth.get_authorization_url([Scopes.ACCOUNTING]))  # no redirect follow
    assert consent.status_code == 302
    location = urlsplit(consent.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert params["state"] == auth.state_token
    assert params["realmId"] == fake.realm_id

    auth.get_bearer_token(params["code"], realm_id=params["realmId"])
    assert auth.realm_id == fake.realm_id
    assert auth.expires_in == ACCESS_TOKEN_SECONDS == 3600
    assert auth.x_refresh_token_expires_in == REFRESH_TOKEN_SECONDS == 100 * 86400
    assert not hasattr(auth, "x_refresh_token_hard_expires_in")  # not asked for
    first_access, first_refresh = auth.access_token, auth.refresh_token

    auth.refresh()
    assert auth.access_token != first_access
    assert auth.refresh_token != first_refresh  # rotated
    # The previous refresh token still works within Intuit's 24 hours.
    auth.refresh(refresh_token=first_refresh)
    assert fake.oauth.token_requests[-1].reuse
    with pytest.raises(AuthClientError):  # a code is single use
        auth.get_bearer_token(params["code"], realm_id=params["realmId"])


def test_the_hard_refresh_expiry_comes_only_to_a_client_that_asks(fake: FakeQuickBooks) -> None:
    refresh_token = fake.tokens()["refresh_token"]
    token_url = f"{fake.base_url}/oauth2/v1/tokens/bearer"

    def refresh(token: str, **headers: str) -> dict[str, Any]:
        answer = httpx.post(
            token_url,
            data={"grant_type": "refresh_token", "refresh_token": token},
            headers={"Authorization": basic(), "Accept": "application/json", **headers},
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    asked = refresh(refresh_token, **{HARD_EXPIRY_HEADER: "true"})
    assert asked["x_refresh_token_hard_expires_in"] == REFRESH_TOKEN_HARD_SECONDS == 157680000
    assert asked["token_type"] == "bearer"
    assert "scope" not in asked
    plain = refresh(asked["refresh_token"])
    assert "x_refresh_token_hard_expires_in" not in plain
    assert plain["x_refresh_token_expires_in"] == 8640000


def test_an_expired_token_answers_401_and_a_refreshed_one_works(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    created = new_invoice(customer, sales_line(item, "10")).save(qb=qb)
    fake.expire_access_tokens()
    with pytest.raises(AuthorizationException) as raised:
        Invoice.get(created.Id, qb=qb)
    assert raised.value.error_code == 401
    assert "errorCode=003200" in raised.value.detail
    fault = httpx.get(
        f"{fake.api_url}/company/{fake.realm_id}/invoice/{created.Id}",
        headers={**JSON, "Authorization": f"Bearer {qb.auth_client.access_token}"},
    ).json()
    assert fault["fault"]["type"] == "AUTHENTICATION"
    assert fault["fault"]["error"][0]["code"] == "3200"

    qb.auth_client.refresh()
    qb.session.token = {"access_token": qb.auth_client.access_token}
    assert Invoice.get(created.Id, qb=qb).Id == created.Id


def test_a_token_opens_only_its_own_company_and_revoking_ends_it(
    fake: FakeQuickBooks,
) -> None:
    other = fake.company()
    url = f"{fake.api_url}/company/{other}/invoice/1"
    refused = httpx.get(url, headers=bearer(fake, fake.realm_id))
    assert refused.status_code == 403
    assert refused.json()["fault"]["error"][0]["code"] == "3100"
    assert httpx.get(url, headers=bearer(fake, other)).status_code == 400  # 610: no invoice

    tokens = fake.tokens(other)
    assert "x_refresh_token_hard_expires_in" not in tokens
    auth = auth_client(
        fake, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )
    assert auth.revoke() is True
    answer = httpx.get(url, headers={**JSON, "Authorization": f"Bearer {tokens['access_token']}"})
    assert answer.status_code == 401


# --- invoices, as python-quickbooks sees them ---------------------------------------------


def test_the_sdk_creates_reads_updates_and_voids_an_invoice(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    invoice = new_invoice(
        customer,
        sales_line(item, "30.00", qty="3", price="10"),
        sales_line(item, "0.37", qty="3.1", price="0.1193548"),  # 0.36999988 → 0.37
        doc_number=f"MB-{uuid.uuid4().hex[:8]}",
    )
    created = invoice.save(qb=qb, request_id=str(uuid.uuid4()))
    assert created.SyncToken == "0"
    assert created.TotalAmt == Decimal("30.37")
    assert created.Balance == Decimal("30.37")

    read = Invoice.get(created.Id, qb=qb)
    assert read.DocNumber == invoice.DocNumber
    assert read.PrivateNote == "meterbridge bill"
    assert (read.TxnDate, read.DueDate) == ("2026-01-31", "2026-02-28")
    assert read.CurrencyRef.value == "USD"
    assert [line.DetailType for line in read.Line] == [
        "SalesItemLineDetail",
        "SalesItemLineDetail",
        "SubTotalLineDetail",
    ]
    assert read.Line[1].SalesItemLineDetail.UnitPrice == Decimal("0.1193548")

    read.Line = [sales_line(item, "12.50", qty="5", price="2.5")]  # a full update
    updated = read.save(qb=qb)
    assert updated.SyncToken == "1"
    assert updated.TotalAmt == Decimal("12.50")
    stored = fake.invoice(fake.realm_id, created.Id)
    assert [line["Amount"] for line in stored["Line"]] == [Decimal("12.50"), Decimal("12.50")]

    Invoice.get(created.Id, qb=qb).void(qb=qb)
    voided = Invoice.get(created.Id, qb=qb)
    assert voided.TotalAmt == 0
    assert voided.Balance == 0
    assert voided.PrivateNote.startswith("Voided")
    assert voided.SyncToken == "2"
    assert voided.Line[0].Amount == 0
    assert fake.invoice(fake.realm_id, created.Id)["Id"] == created.Id  # kept, not deleted


def test_the_sdk_reads_the_customers_and_items_an_invoice_references(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    fake.customer("Someone else")
    read = Customer.get(customer, qb=qb)
    assert read.CurrencyRef.value == "USD"
    assert [c.Id for c in Customer.filter(DisplayName=read.DisplayName, qb=qb)] == [customer]
    assert Item.get(item, qb=qb).Name == "Usage"


def test_a_stale_sync_token_is_refused(fake: FakeQuickBooks, customer: str, item: str) -> None:
    qb = sdk(fake)
    created = new_invoice(customer, sales_line(item, "10")).save(qb=qb)
    first, second = Invoice.get(created.Id, qb=qb), Invoice.get(created.Id, qb=qb)
    first.PrivateNote = "first"
    first.save(qb=qb)
    second.PrivateNote = "second"
    with pytest.raises(QuickbooksException) as raised:
        second.save(qb=qb)
    assert raised.value.error_code == 5010
    assert raised.value.message == "Stale Object Error"
    assert fake.invoice(fake.realm_id, created.Id)["PrivateNote"] == "first"


def test_validation_faults_surface_as_the_sdk_s_exceptions_and_write_nothing(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    before = len(fake.invoices())
    with pytest.raises(QuickbooksException) as raised:
        new_invoice(customer, sales_line(item, "30.01", qty="3", price="10")).save(qb=qb)
    assert raised.value.error_code == 6070
    assert raised.value.message == "Amount is not equal to UnitPrice * Qty"
    assert "Supplied value:30.01" in raised.value.detail

    with pytest.raises(ValidationException) as unknown_item:
        new_invoice(customer, sales_line("999999", "10")).save(qb=qb)
    assert unknown_item.value.error_code == 2500
    assert unknown_item.value.message == "Invalid Reference Id"

    with pytest.raises(ValidationException) as no_customer:
        new_invoice("999999", sales_line(item, "10")).save(qb=qb)
    assert no_customer.value.error_code == 2500

    retired = fake.customer("Retired")
    fake.deactivate(retired)
    with pytest.raises(ObjectNotFoundException):
        new_invoice(retired, sales_line(item, "10")).save(qb=qb)
    assert len(fake.invoices()) == before


def test_a_repeated_requestid_answers_the_first_response_and_writes_nothing(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    request_id = str(uuid.uuid4())
    first = new_invoice(customer, sales_line(item, "10")).save(qb=qb, request_id=request_id)
    again = new_invoice(customer, sales_line(item, "99")).save(qb=qb, request_id=request_id)
    assert again.Id == first.Id
    assert again.TotalAmt == Decimal("10")
    mine = [c for c in fake.applied("create_invoice") if c.request_id == request_id]
    assert len(mine) == 1
    assert fake.calls_to("create_invoice")[-1].replayed
    assert [i["Id"] for i in fake.invoices() if i["CustomerRef"]["value"] == customer] == [first.Id]


def test_a_lost_answer_is_recovered_with_the_same_requestid(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    url = f"{fake.api_url}/company/{fake.realm_id}/invoice"
    params = {"minorversion": "75", "requestid": str(uuid.uuid4())}
    headers = bearer(fake)
    fake.fail_next(1, "apply_then_hang", operation="create_invoice")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            url, params=params, json=raw_invoice(customer, item), headers=headers, timeout=0.2
        )
    retried = httpx.post(url, params=params, json=raw_invoice(customer, item), headers=headers)
    assert retried.status_code == 200
    created = fake.applied("create_invoice")[-1]
    assert created.request_id == params["requestid"]
    assert retried.json()["Invoice"]["Id"] == fake.invoices()[-1]["Id"]
    assert len([i for i in fake.invoices() if i["CustomerRef"]["value"] == customer]) == 1


def test_a_paid_invoice_cannot_be_voided_and_a_deleted_one_is_gone(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    created = new_invoice(customer, sales_line(item, "40")).save(qb=qb)
    fake.pay(created.Id, Decimal("15"))
    paid = Invoice.get(created.Id, qb=qb)
    assert paid.Balance == Decimal("25")
    assert paid.SyncToken == "1"
    with pytest.raises(QuickbooksException) as raised:
        paid.void(qb=qb)
    assert raised.value.error_code == 6000
    assert fake.invoice(fake.realm_id, created.Id)["TotalAmt"] == Decimal("40")

    other = new_invoice(customer, sales_line(item, "5")).save(qb=qb)
    answer = Invoice.get(other.Id, qb=qb).delete(qb=qb)
    assert answer["Invoice"] == {"status": "Deleted", "domain": "QBO", "Id": other.Id}
    with pytest.raises(ObjectNotFoundException):
        Invoice.get(other.Id, qb=qb)
    assert fake.is_deleted(other.Id)


def test_an_invoice_is_found_again_by_doc_number(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    number = f"MB-{uuid.uuid4().hex[:10]}"
    created = new_invoice(customer, sales_line(item, "7"), doc_number=number).save(qb=qb)
    found = Invoice.filter(DocNumber=number, qb=qb)
    assert [invoice.Id for invoice in found] == [created.Id]
    assert Invoice.where("DocNumber = 'no-such-number'", qb=qb) == []
    assert Invoice.count(f"CustomerRef = '{customer}'", qb=qb) == 1
    with pytest.raises(ValidationException) as raised:
        Invoice.where("PrivateNote = 'meterbridge bill'", qb=qb)
    assert raised.value.error_code == 4000

    with pytest.raises(QuickbooksException) as duplicate:
        new_invoice(customer, sales_line(item, "7"), doc_number=number).save(qb=qb)
    assert duplicate.value.error_code == 6140
    allowed = new_invoice(customer, sales_line(item, "7"), doc_number=number).save(
        qb=qb, params={"include": "allowduplicatedocnum"}
    )
    assert allowed.Id != created.Id


def test_a_sparse_update_keeps_what_it_does_not_send_and_a_full_update_clears_it(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    url = f"{fake.api_url}/company/{fake.realm_id}/invoice"
    headers = bearer(fake)
    body = raw_invoice(customer, item, PrivateNote="keep me", DocNumber=uuid.uuid4().hex[:12])
    created = httpx.post(url, json=body, headers=headers).json()["Invoice"]
    assert created["TotalAmt"] == 25
    assert created["Line"][0]["SalesItemLineDetail"]["Qty"] == 2.5

    sparse = {"Id": created["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "changed"}
    after = httpx.post(url, json=sparse, headers=headers).json()["Invoice"]
    assert after["PrivateNote"] == "changed"
    assert after["DocNumber"] == body["DocNumber"]
    assert after["TotalAmt"] == 25

    full = {**raw_invoice(customer, item), "Id": created["Id"], "SyncToken": after["SyncToken"]}
    cleared = httpx.post(url, json=full, headers=headers).json()["Invoice"]
    assert "PrivateNote" not in cleared
    assert "DocNumber" not in cleared
    assert cleared["SyncToken"] == "2"


# --- the wire: parameters, throttles and faults -------------------------------------------


def test_minorversion_is_recorded_and_a_low_one_is_served_as_75(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    qb = sdk(fake)
    new_invoice(customer, sales_line(item, "1")).save(qb=qb)
    assert fake.calls_to("create_invoice")[-1].minorversion == "75"
    url = f"{fake.api_url}/company/{fake.realm_id}/invoice"
    old = httpx.post(
        url, params={"minorversion": "65"}, json=raw_invoice(customer, item), headers=bearer(fake)
    )
    assert old.status_code == 200  # Intuit ignores a minor version below 75

    strict = FakeQuickBooks(strict_minorversion=True).start()
    try:
        strict_customer, strict_item = strict.customer("Acme"), strict.item("Usage")
        strict_url = f"{strict.api_url}/company/{strict.realm_id}/invoice"
        refused = httpx.post(
            strict_url,
            params={"minorversion": "65"},
            json=raw_invoice(strict_customer, strict_item),
            headers=bearer(strict),
        )
        assert refused.status_code == 400
        assert refused.json()["Fault"]["type"] == "ValidationFault"
    finally:
        strict.stop()


def test_requestid_longer_than_50_characters_and_non_json_accept_are_refused(
    fake: FakeQuickBooks, customer: str, item: str
) -> None:
    url = f"{fake.api_url}/company/{fake.realm_id}/invoice"
    body = raw_invoice(customer, item)
    too_long = httpx.post(url, params={"requestid": "r" * 51}, json=body, headers=bearer(fake))
    assert too_long.status_code == 400
    fifty = httpx.post(
        url, params={"requestid": uuid.uuid4().hex + "x" * 18}, json=body, headers=bearer(fake)
    )
    assert fifty.status_code == 200
    headers = {"Authorization": bearer(fake)["Authorization"]}
    assert httpx.post(url, json=body, headers=headers).status_code == 406


def test_500_a_minute_and_10_at_once_per_company_answer_429() -> None:
    fake = FakeQuickBooks(
        requests_per_minute=3, minute_seconds=0.5, concurrent_limit=2, latency_seconds=0.3
    ).start()
    try:
        url = f"{fake.api_url}/company/{fake.realm_id}/query"
        params = {"query": "select * from Invoice"}
        headers = bearer(fake)
        statuses: list[int] = []

        def query() -> None:
            statuses.append(httpx.get(url, params=params, headers=headers).status_code)

        threads = [threading.Thread(target=query) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 200, 429]
        assert fake.max_concurrent() == 3

        throttled = httpx.get(url, params=params, headers=headers)  # the 4th within the minute
        assert throttled.status_code == 429
        error = throttled.json()["Fault"]["Error"][0]
        assert error["Message"] == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
        other = fake.company()
        elsewhere = f"{fake.api_url}/company/{other}/query"
        assert httpx.get(elsewhere, params=params, headers=bearer(fake, other)).status_code == 200
    finally:
        fake.stop()


def test_the_sandbox_s_10_a_second_when_asked_for() -> None:
    fake = FakeQuickBooks(requests_per_second=2).start()
    try:
        url = f"{fake.api_url}/company/{fake.realm_id}/query"
        headers = bearer(fake)
        statuses = [
            httpx.get(url, params={"query": "select * from Item"}, headers=headers).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
    finally:
        fake.stop()


def test_injected_faults(fake: FakeQuickBooks, customer: str, item: str) -> None:
    qb = sdk(fake)
    before = len(fake.invoices())
    fake.fail_next(1, "500")
    with pytest.raises(SevereException) as raised:
        new_invoice(customer, sales_line(item, "1")).save(qb=qb)
    assert raised.value.error_code == 10000
    fake.fail_next(1, "401")
    with pytest.raises(AuthorizationException):
        new_invoice(customer, sales_line(item, "1")).save(qb=qb)
    url = f"{fake.api_url}/company/{fake.realm_id}/invoice"
    fake.fail_next(1, "429")
    assert (
        httpx.post(url, json=raw_invoice(customer, item), headers=bearer(fake)).status_code == 429
    )
    fake.fail_next(1, "hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=raw_invoice(customer, item), headers=bearer(fake), timeout=0.2)
    assert len(fake.invoices()) == before
    assert [c.fault for c in fake.calls[-4:]] == ["500", "401", "429", "hang"]
