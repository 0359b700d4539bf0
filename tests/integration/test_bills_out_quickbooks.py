"""Bills out to QuickBooks Online end to end: a credential connected through the browser
consent (the fake's consent page redirects at once, naming the company as ``realmId``),
the admin API, real workers and beat, and the fake QuickBooks, which keeps the invoices,
replays requestids, rotates refresh tokens and counts calls in flight per company."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.support.billing import (
    Api,
    api_on,
    destination_config,
    external_mapping,
    month,
    replay_approval,
    running_stack,
)
from tests.support.fake_quickbooks import CLIENT_ID, CLIENT_SECRET, FakeQuickBooks
from tests.support.processes import Stack, wait_for
from tests.support.smtp import SmtpServer, text_of

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def usage(quantity: int, unit: str = "0.0125") -> dict[str, Any]:
    subtotal = (Decimal(quantity) * Decimal(unit)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return {
        "type": "USAGE",
        "product_id": "api",
        "quantity": quantity,
        "unit_price": unit,
        "subtotal": str(subtotal),
    }


def quickbooks_env(fake: FakeQuickBooks) -> dict[str, str]:
    return {
        "METERBRIDGE_QUICKBOOKS_AUTHORIZE_URL": f"{fake.base_url}/connect/oauth2",
        "METERBRIDGE_QUICKBOOKS_TOKEN_URL": f"{fake.base_url}/oauth2/v1/tokens/bearer",
        "METERBRIDGE_QUICKBOOKS_API_BASE": fake.base_url,
        "METERBRIDGE_QUICKBOOKS_SANDBOX_API_BASE": "http://127.0.0.1:9",  # never reached
        "METERBRIDGE_HTTP_TIMEOUT_SECONDS": "1.5",
    }


@pytest.fixture(scope="module")
def fake_quickbooks() -> Iterator[FakeQuickBooks]:
    server = FakeQuickBooks(hang_seconds=3, latency_seconds=0.05).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quickbooks_stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake_quickbooks: FakeQuickBooks,
    smtp_server: SmtpServer,
) -> Iterator[Stack]:
    """Receiver, two workers (8 tasks at once each: 16, more than QuickBooks' 10 calls at
    once) and beat, talking to the fake QuickBooks."""
    outside = {**quickbooks_env(fake_quickbooks), "METERBRIDGE_SMTP_URL": smtp_server.url}
    yield from running_stack(tmp_path_factory.mktemp("quickbooks"), outside, concurrency=8)


@pytest.fixture
def api(quickbooks_stack: Stack) -> Iterator[Api]:
    yield from api_on(quickbooks_stack)


@pytest.fixture
def realm(fake_quickbooks: FakeQuickBooks) -> str:
    """A company of its own in the fake QuickBooks, so each test has its own limits."""
    return fake_quickbooks.company(name=f"Company {uuid.uuid4().hex[:6]}")


def new_credential(api: Api) -> dict[str, Any]:
    credential: dict[str, Any] = api.post(
        "/api/v1/credentials",
        {
            "name": "quickbooks",
            "destination": "quickbooks",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert credential["status"] == "awaiting_authorization"
    return credential


def consent(api: Api, fake: FakeQuickBooks, credential_id: str, realm: str) -> str:
    """The person opens the consent link and picks ``realm``: where Intuit sends them back."""
    link = api.get(f"/api/v1/credentials/{credential_id}/authorize")
    fake.consent_realm = realm
    answer = httpx.get(link["authorization_url"])
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def connect(api: Api, fake: FakeQuickBooks, realm: str) -> dict[str, Any]:
    credential = new_credential(api)
    callback = httpx.get(consent(api, fake, credential["id"], realm))
    assert callback.status_code == 200, callback.text
    shown: dict[str, Any] = api.get(f"/api/v1/credentials/{credential['id']}")
    return shown


def quickbooks_config(api: Api, credential_id: str, **options: Any) -> dict[str, Any]:
    defaults = {"use_external_mapping_account_code": True}
    return destination_config(api, "quickbooks", credential_id, **{**defaults, **options})


def setup(api: Api, fake: FakeQuickBooks, realm: str, **options: Any) -> dict[str, Any]:
    """A connected credential and a config for ``realm``, an account mapped to a customer,
    the product ``api`` mapped to an item and the standing charge to another."""
    credential = connect(api, fake, realm)
    standing = fake.item("Platform fee", realm=realm)
    config = quickbooks_config(
        api, credential["id"], standing_charge_item_price_id=standing, **options
    )
    account = api.account()
    customer = fake.customer(account["name"], realm=realm)
    external_mapping(api, "account", account["id"], "quickbooks", "customer", customer)
    item = fake.item("API calls", realm=realm)
    external_mapping(api, "product", "api", "quickbooks", "item", item)
    return {"credential": credential, "config": config, "account": account, "customer": customer}


def lines(invoice: dict[str, Any]) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """What a person checks on the invoice: description, quantity, unit price, amount."""
    return sorted(
        (
            line["Description"],
            line["SalesItemLineDetail"]["Qty"],
            line["SalesItemLineDetail"]["UnitPrice"],
            line["Amount"],
        )
        for line in invoice["Line"]
        if line["DetailType"] == "SalesItemLineDetail"
    )


def test_consent_connects_the_company_it_names_and_a_callback_without_one_is_refused(
    api: Api, fake_quickbooks: FakeQuickBooks, realm: str
) -> None:
    credential = new_credential(api)
    assert "client_secret" not in str(credential)
    callback_url = consent(api, fake_quickbooks, credential["id"], realm)
    query = dict(parse_qsl(urlsplit(callback_url).query))
    assert query["realmId"] == realm

    # without realmId the callback connects nothing, and spends no code
    exchanges = len(fake_quickbooks.oauth.token_requests)
    without = {k: v for k, v in query.items() if k != "realmId"}
    refused = httpx.get(f"{callback_url.split('?')[0]}?{urlencode(without)}")
    assert refused.status_code == 400
    assert "realmId" in refused.text
    assert len(fake_quickbooks.oauth.token_requests) == exchanges
    assert api.get(f"/api/v1/credentials/{credential['id']}")["status"] == (
        "awaiting_authorization"
    )

    page = httpx.get(consent(api, fake_quickbooks, credential["id"], realm))

    assert page.status_code == 200, page.text
    shown = api.get(f"/api/v1/credentials/{credential['id']}")
    assert (shown["status"], shown["tenant_id"]) == ("connected", realm)


def test_an_approved_bill_becomes_one_invoice_holding_its_latest_version(
    api: Api, fake_quickbooks: FakeQuickBooks, realm: str, quickbooks_stack: Stack
) -> None:
    fake = fake_quickbooks
    made = setup(api, fake, realm, due_days=14)

    # a generated bill is not sent: QuickBooks takes approved bills only
    bill = api.bill(made["account"]["id"], [STANDING, usage(1234)])
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)

    assert run["status"] == "COMPLETE", run
    assert (run["trigger"], run["config_id"], run["items_added"]) == (
        "bill.approved",
        made["config"]["id"],
        2,
    )
    invoice = fake.invoice(realm, run["invoice_id"])
    assert invoice["CustomerRef"]["value"] == made["customer"]
    assert (invoice["TxnDate"], invoice["DueDate"]) == ("2026-11-01", "2026-11-15")
    assert bill["id"] in invoice["PrivateNote"]
    assert lines(invoice) == [
        ("Standing charge", 1, 49, 49),
        ("Usage", 1234, Decimal("0.0125"), Decimal("15.43")),
    ]
    [create] = fake.applied("create_invoice", realm)
    assert create.minorversion == "75"
    assert create.request_id is not None
    assert len(create.request_id) <= 50

    # a new version, approved again: the same invoice holds the new lines only
    replay_approval(quickbooks_stack, api, bill["id"], version=2, line_items=[usage(2000)])
    second = api.wait_runs(bill["id"], 2)[1]
    assert second["status"] == "COMPLETE", second
    assert second["invoice_id"] == run["invoice_id"]
    invoice = fake.invoice(realm, run["invoice_id"])
    assert lines(invoice) == [("Usage", 2000, Decimal("0.0125"), 25)]
    assert (invoice["TotalAmt"], invoice["SyncToken"]) == (Decimal("25"), "1")
    assert len(fake.invoices(realm)) == 1

    # once it has a payment, a new version is an error, and QuickBooks is left as it is
    fake.pay(run["invoice_id"], Decimal("10"), realm=realm)
    replay_approval(quickbooks_stack, api, bill["id"], version=3, line_items=[usage(4000)])
    third = api.wait_runs(bill["id"], 3)[2]
    assert third["status"] == "ERROR", third
    assert third["error_type"] == "integration.perform.error"
    assert "payment applied (10.00 of 25.00 paid)" in third["error_message"]
    assert fake.invoice(realm, run["invoice_id"])["TotalAmt"] == Decimal("25")
    assert len(fake.invoices(realm)) == 1
    assert len(fake.applied("create_invoice", realm)) == 1


def test_a_lost_answer_leaves_one_invoice(
    api: Api, fake_quickbooks: FakeQuickBooks, realm: str
) -> None:
    fake = fake_quickbooks
    made = setup(api, fake, realm)
    account = made["account"]["id"]

    # QuickBooks makes the invoice, and the answer is lost: the retry finds it, even once
    # QuickBooks no longer remembers the requestid (how long it does is undocumented)
    landed = api.bill(account, [STANDING], **month(1))
    fake.fail_next(1, "apply_then_hang", operation="create_invoice")
    fake.requestid_seconds = 0.5
    try:
        api.approve(landed["id"])
        [run] = api.wait_runs(landed["id"], 1)
    finally:
        fake.requestid_seconds = None
    assert run["status"] == "COMPLETE", run
    [invoice] = fake.invoices(realm)
    assert invoice["Id"] == run["invoice_id"]
    assert [c.fault for c in fake.calls_to("create_invoice") if c.realm == realm] == [
        "apply_then_hang"
    ]

    # the request never got there: sent again under the requestid recorded before
    lost = api.bill(account, [STANDING], **month(2))
    fake.fail_next(1, "hang", operation="create_invoice")
    api.approve(lost["id"])
    [again] = api.wait_runs(lost["id"], 1)
    assert again["status"] == "COMPLETE", again
    assert len(fake.invoices(realm)) == 2
    hung, resent = [c for c in fake.calls_to("create_invoice") if c.realm == realm][1:]
    assert (hung.fault, hung.applied, resent.applied) == ("hang", False, True)
    assert hung.request_id == resent.request_id
    assert len(fake.applied("create_invoice", realm)) == 2


def test_a_revoked_connection_fails_runs_until_ten_disable_the_config_and_email(
    api: Api, fake_quickbooks: FakeQuickBooks, realm: str, smtp_server: SmtpServer
) -> None:
    fake = fake_quickbooks
    person = api.post(
        "/api/v1/users", {"name": "Ops", "email": f"ops-{uuid.uuid4().hex[:8]}@example.com"}
    )
    made = setup(api, fake, realm, disabled_notification_user_ids=[person["id"]])
    credential, config = made["credential"], made["config"]
    refused = fake.oauth.invalid_grants
    # the person disconnects meterbridge in QuickBooks: its tokens stop working
    fake.oauth.revoke(access_tokens=True)

    for n in range(1, 11):
        bill = api.bill(made["account"]["id"], [STANDING], **month(n))
        api.approve(bill["id"])
        [run] = api.wait_runs(bill["id"], 1)
        assert (run["status"], run["error_type"]) == (
            "AUTH_FAILED",
            "integration.authentication.error",
        ), run
    shown = api.get(f"/api/v1/credentials/{credential['id']}")
    assert shown["status"] == "needs_reconnect"
    assert "invalid_grant" in shown["status_reason"]
    assert fake.oauth.invalid_grants - refused == 1  # asked once; then the status says it all
    config_now = api.get(f"/api/v1/integrations/{config['id']}")
    assert (config_now["enabled"], config_now["consecutive_errors"]) == (False, 10)
    [message] = wait_for(lambda: smtp_server.to(person["email"]), timeout=30)
    assert "integration.authentication.error" in text_of(message)
    assert fake.invoices(realm) == []

    # consenting again connects it: the run held meanwhile goes out once enabled
    held = api.bill(made["account"]["id"], [STANDING], **month(11))
    api.approve(held["id"])
    assert api.wait_runs(held["id"], 1)[0]["status"] == "DISABLED"
    assert httpx.get(consent(api, fake, credential["id"], realm)).status_code == 200
    assert api.get(f"/api/v1/credentials/{credential['id']}")["status"] == "connected"
    api.post(f"/api/v1/integrations/{config['id']}/enable")
    released = wait_for(
        lambda: (r := api.wait_runs(held["id"], 1)[0])["status"] == "COMPLETE" and r,
        timeout=60,
    )
    assert held["id"] in fake.invoice(realm, released["invoice_id"])["PrivateNote"]


@contextmanager
def refresh_lock_held(stack: Stack, credential_id: str) -> Iterator[None]:
    """The credential's row locked, as by a worker in the middle of a refresh: every run
    that needs a token waits at the lock, and they all go on at once when it is let go."""
    with stack.env.engine.connect() as connection, connection.begin():
        connection.execute(
            sa.text("SELECT id FROM credential WHERE id = :id FOR UPDATE"), {"id": credential_id}
        )
        yield


def test_twenty_runs_on_an_expired_token_refresh_it_once_and_keep_to_ten_calls_at_once(
    api: Api, fake_quickbooks: FakeQuickBooks, realm: str, quickbooks_stack: Stack
) -> None:
    fake = fake_quickbooks
    made = setup(api, fake, realm)
    config_id = made["config"]["id"]
    bills = [api.bill(made["account"]["id"], [STANDING], **month(n))["id"] for n in range(1, 21)]
    refreshes, refused = fake.oauth.refreshes, fake.oauth.invalid_grants
    fake.expire_access_tokens()  # the hour is up

    fake.latency_seconds = 0.5  # calls long enough to overlap
    try:
        # 12 or more runs (of 16 worker slots) wait for the token, then call at once:
        # without the cap, more than 10 calls would be in flight
        with refresh_lock_held(quickbooks_stack, made["credential"]["id"]):
            for bill_id in bills:
                api.approve(bill_id)
            wait_for(
                lambda: len(api.runs(config_id=config_id, status="STARTED")) >= 12,
                timeout=20,
                what="runs waiting for the token",
            )
        runs = [api.wait_runs(bill_id, 1, timeout=120)[0] for bill_id in bills]
    finally:
        fake.latency_seconds = 0.05

    assert [r["status"] for r in runs] == ["COMPLETE"] * 20
    assert fake.oauth.refreshes - refreshes == 1
    assert fake.oauth.invalid_grants - refused == 0
    assert len(fake.invoices(realm)) == 20
    # the fake refuses an 11th call at once (429) and counts it: 11 means one was tried
    assert 1 < fake.max_concurrent(realm) <= 10
    assert [c for c in fake.calls if c.realm == realm and c.status == 429] == []
