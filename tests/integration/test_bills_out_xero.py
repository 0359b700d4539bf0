"""Bills out to Xero end to end: a credential connected through the browser consent (the
fake Xero's consent page redirects at once), the admin API, real workers, and the fake
Xero, which keeps the invoices, rotates refresh tokens and counts calls in flight."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from tests.support.billing import (
    Api,
    api_on,
    destination_config,
    external_mapping,
    month,
    replay_approval,
    running_stack,
)
from tests.support.fake_xero import CLIENT_ID, CLIENT_SECRET, FakeXero
from tests.support.processes import Stack, wait_for
from tests.support.smtp import SmtpServer, text_of

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def usage(quantity: int, unit: str = "0.0125") -> dict[str, Any]:
    subtotal = (Decimal(quantity) * Decimal(unit)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return {"type": "USAGE", "quantity": quantity, "unit_price": unit, "subtotal": str(subtotal)}


def xero_env(fake: FakeXero) -> dict[str, str]:
    return {
        "METERBRIDGE_XERO_AUTHORIZE_URL": fake.authorize_url,
        "METERBRIDGE_XERO_TOKEN_URL": fake.token_url,
        "METERBRIDGE_XERO_API_BASE": fake.base_url,
        "METERBRIDGE_HTTP_TIMEOUT_SECONDS": "1.5",
    }


@pytest.fixture(scope="module")
def fake_xero() -> Iterator[FakeXero]:
    server = FakeXero(hang_seconds=3, latency=0.05).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def xero_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_xero: FakeXero, smtp_server: SmtpServer
) -> Iterator[Stack]:
    """Receiver, two workers (4 tasks at once each) and beat, talking to the fake Xero."""
    outside = {**xero_env(fake_xero), "METERBRIDGE_SMTP_URL": smtp_server.url}
    yield from running_stack(tmp_path_factory.mktemp("xero"), outside, concurrency=4)


@pytest.fixture
def api(xero_stack: Stack) -> Iterator[Api]:
    yield from api_on(xero_stack)


@pytest.fixture
def tenant(fake_xero: FakeXero) -> str:
    """An organisation of its own in the fake Xero, so each test has its own limits."""
    return fake_xero.add_tenant(f"Org {uuid.uuid4().hex[:6]}")


def connect(api: Api, tenant: str, **fields: Any) -> dict[str, Any]:
    """A credential connected as a person would: the consent link, the provider's
    redirect, the receiver's callback."""
    credential = api.post(
        "/api/v1/credentials",
        {
            "name": "xero",
            "destination": "xero",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "tenant_id": tenant,
            **fields,
        },
    )
    assert credential["status"] == "awaiting_authorization"
    link = api.get(f"/api/v1/credentials/{credential['id']}/authorize")
    consent = httpx.get(link["authorization_url"])
    assert consent.status_code == 302, consent.text
    callback = httpx.get(consent.headers["location"])
    assert callback.status_code == 200, callback.text
    return api.get(f"/api/v1/credentials/{credential['id']}")


def xero_config(api: Api, credential_id: str, **options: Any) -> dict[str, Any]:
    defaults = {"use_external_mapping_account_code": True, "default_account_code": "200"}
    return destination_config(api, "xero", credential_id, **{**defaults, **options})


def customer(api: Api, fake: FakeXero, tenant: str) -> dict[str, Any]:
    account = api.account()
    contact = fake.contact(account["name"], tenant_id=tenant)
    external_mapping(api, "account", account["id"], "xero", "contact", contact)
    return {**account, "contact": contact}


def lines(invoice: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """What a person checks on the invoice: description, quantity, unit amount, amount."""
    return sorted(
        (li["Description"], str(li["Quantity"]), str(li["UnitAmount"]), str(li["LineAmount"]))
        for li in invoice["LineItems"]
    )


def test_connecting_through_the_consent_page(api: Api, fake_xero: FakeXero, tenant: str) -> None:
    credential = api.post(
        "/api/v1/credentials",
        {
            "name": "x",
            "destination": "xero",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "tenant_id": tenant,
        },
    )
    assert "client_secret" not in str(credential)
    link = api.get(f"/api/v1/credentials/{credential['id']}/authorize")
    assert link["redirect_uri"].endswith("/oauth/xero/callback")
    assert link["authorization_url"].startswith(fake_xero.authorize_url + "?")
    consent = httpx.get(link["authorization_url"])
    callback_url = consent.headers["location"]
    assert callback_url.startswith(link["redirect_uri"] + "?")

    page = httpx.get(callback_url)

    assert page.status_code == 200, page.text
    assert "is connected to xero" in page.text
    shown = api.get(f"/api/v1/credentials/{credential['id']}")
    assert (shown["status"], shown["tenant_id"]) == ("connected", tenant)
    # the link was single use
    again = httpx.get(callback_url)
    assert again.status_code == 400
    assert "already used" in again.text


def test_an_approved_bill_becomes_one_invoice_holding_its_latest_version(
    api: Api, fake_xero: FakeXero, tenant: str, xero_stack: Stack
) -> None:
    credential = connect(api, tenant)
    config = xero_config(api, credential["id"], due_days=14)
    account = customer(api, fake_xero, tenant)

    # a generated bill is not sent: Xero takes approved bills only
    bill = api.bill(account["id"], [STANDING, usage(1234)])
    approved = api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)

    assert run["status"] == "COMPLETE", run
    assert (run["config_id"], run["items_added"]) == (config["id"], 2)
    invoice = fake_xero.invoice(run["invoice_id"])
    assert (invoice["Type"], invoice["Status"], invoice["Reference"]) == (
        "ACCREC",
        "DRAFT",
        bill["id"],
    )
    assert invoice["Contact"]["ContactID"] == account["contact"]
    assert lines(invoice) == [
        ("Standing charge", "1.0", "49.0", "49.0"),
        ("Usage", "1234.0", "0.0125", "15.43"),  # 4 places: sent with unitdp=4
    ]
    writes = fake_xero.writes(tenant)
    assert len(writes) == 1
    assert all(w.query.get("unitdp") == "4" and w.idempotency_key for w in writes)
    assert approved["id"] == bill["id"]

    # a new version, approved again: the same draft holds the new lines only
    replay_approval(xero_stack, api, bill["id"], version=2, line_items=[STANDING, usage(2000)])
    runs = api.wait_runs(bill["id"], 2)
    assert runs[1]["status"] == "COMPLETE", runs[1]
    assert runs[1]["invoice_id"] == run["invoice_id"]
    invoice = fake_xero.invoice(run["invoice_id"])
    assert Decimal(str(invoice["Total"])) == Decimal("74.00")
    assert len(invoice["LineItems"]) == 2
    assert len(fake_xero.invoices(tenant)) == 1


def test_an_authorised_invoice_is_voided_and_replaced_unless_it_has_a_payment(
    api: Api, fake_xero: FakeXero, tenant: str, xero_stack: Stack
) -> None:
    credential = connect(api, tenant)
    xero_config(api, credential["id"], invoice_status="AUTHORISED", due_days=14)
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING], period_start="2026-10-01", period_end="2026-11-01")
    api.approve(bill["id"])
    [first] = api.wait_runs(bill["id"], 1)
    invoice = fake_xero.invoice(first["invoice_id"])
    assert (invoice["Status"], invoice["DueDateString"][:10]) == ("AUTHORISED", "2026-11-15")

    # a new version: the authorised invoice, unpaid, is voided and a new one made
    replay_approval(xero_stack, api, bill["id"], version=2, line_items=[STANDING, usage(400)])
    second = api.wait_runs(bill["id"], 2)[1]
    assert second["status"] == "COMPLETE", second
    assert second["invoice_id"] != first["invoice_id"]
    assert fake_xero.invoice(first["invoice_id"])["Status"] == "VOIDED"
    replacement = fake_xero.invoice(second["invoice_id"])
    assert (replacement["Status"], Decimal(str(replacement["Total"]))) == (
        "AUTHORISED",
        Decimal("54.00"),
    )

    # once it has a payment, a new version is an error, and Xero is left as it is
    fake_xero.pay(second["invoice_id"], "10.00")
    replay_approval(xero_stack, api, bill["id"], version=3, line_items=[STANDING, usage(800)])
    third = api.wait_runs(bill["id"], 3)[2]
    assert third["status"] == "ERROR", third
    assert third["error_type"] == "integration.perform.error"
    assert "AUTHORISED with 10" in third["error_message"]
    assert fake_xero.invoice(second["invoice_id"])["Status"] == "AUTHORISED"
    assert len(fake_xero.invoices(tenant)) == 2


def test_a_lost_answer_leaves_one_invoice(api: Api, fake_xero: FakeXero, tenant: str) -> None:
    credential = connect(api, tenant)
    xero_config(api, credential["id"])
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING])
    fake_xero.fail_next(1, "apply_then_hang")  # Xero makes the invoice; the answer is lost
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert run["status"] == "COMPLETE", run
    [invoice] = fake_xero.invoices(tenant)
    assert invoice["InvoiceID"] == run["invoice_id"]
    assert [c.fault for c in fake_xero.writes(tenant)] == ["apply_then_hang"]


def test_a_lost_answer_never_adopts_another_configs_invoice_of_the_bill(
    api: Api, fake_xero: FakeXero, tenant: str, xero_stack: Stack
) -> None:
    # given a bill already on an invoice of one config
    credential = connect(api, tenant)
    first = xero_config(api, credential["id"], name="first")
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING])
    api.approve(bill["id"])
    [theirs] = api.wait_runs(bill["id"], 1)
    api.post(f"/api/v1/integrations/{first['id']}/disable")
    # when a second config sends it, and the answer to its creation is lost
    second = xero_config(api, credential["id"], name="second")
    fake_xero.fail_next(1, "apply_then_hang")
    replay_approval(xero_stack, api, bill["id"])
    ours = next(r for r in api.wait_runs(bill["id"], 3) if r["config_id"] == second["id"])
    # then it finds the invoice its creation made, not the first config's
    assert ours["status"] == "COMPLETE", ours
    assert ours["invoice_id"] != theirs["invoice_id"]
    assert len(fake_xero.invoices(tenant)) == 2


def test_a_revoked_connection_fails_runs_until_ten_disable_the_config_and_email(
    api: Api, fake_xero: FakeXero, tenant: str, smtp_server: SmtpServer
) -> None:
    person = api.post(
        "/api/v1/users", {"name": "Ops", "email": f"ops-{uuid.uuid4().hex[:8]}@example.com"}
    )
    credential = connect(api, tenant)
    config = xero_config(api, credential["id"], disabled_notification_user_ids=[person["id"]])
    account = customer(api, fake_xero, tenant)
    # the person disconnects meterbridge in Xero: its tokens and refresh token stop working
    fake_xero.auth.revoke(access_tokens=True)

    for n in range(1, 11):
        bill = api.bill(account["id"], [STANDING], **month(n))
        api.approve(bill["id"])
        [run] = api.wait_runs(bill["id"], 1)
        assert (run["status"], run["error_type"]) == (
            "AUTH_FAILED",
            "integration.authentication.error",
        ), run
    shown = api.get(f"/api/v1/credentials/{credential['id']}")
    assert shown["status"] == "needs_reconnect"
    assert "invalid_grant" in shown["status_reason"]
    assert fake_xero.auth.invalid_grants == 1  # asked once; then the status says it all
    config_now = api.get(f"/api/v1/integrations/{config['id']}")
    assert (config_now["enabled"], config_now["consecutive_errors"]) == (False, 10)
    [message] = wait_for(lambda: smtp_server.to(person["email"]), timeout=30)
    assert "integration.authentication.error" in text_of(message)
    assert fake_xero.invoices(tenant) == []

    # consenting again connects it: the run held meanwhile goes out once enabled
    held_bill = api.bill(account["id"], [STANDING], **month(11))
    api.approve(held_bill["id"])
    assert api.wait_runs(held_bill["id"], 1)[0]["status"] == "DISABLED"
    link = api.get(f"/api/v1/credentials/{credential['id']}/authorize")
    assert httpx.get(httpx.get(link["authorization_url"]).headers["location"]).status_code == 200
    assert api.get(f"/api/v1/credentials/{credential['id']}")["status"] == "connected"
    api.post(f"/api/v1/integrations/{config['id']}/enable")
    released = wait_for(
        lambda: (r := api.wait_runs(held_bill["id"], 1)[0])["status"] == "COMPLETE" and r,
        timeout=60,
    )
    assert fake_xero.invoice(released["invoice_id"])["Reference"] == held_bill["id"]


def test_twenty_runs_on_an_expired_token_refresh_it_once_and_keep_to_five_calls_at_once(
    api: Api, fake_xero: FakeXero, tenant: str
) -> None:
    credential = connect(api, tenant)
    xero_config(api, credential["id"])
    account = customer(api, fake_xero, tenant)
    bills = [api.bill(account["id"], [STANDING], **month(n))["id"] for n in range(1, 21)]
    refreshes, refused = fake_xero.auth.refreshes, fake_xero.auth.invalid_grants
    fake_xero.auth.expire_access_tokens()  # the 30 minutes are up

    fake_xero.latency = 0.5  # calls long enough that 8 worker slots would overlap them
    try:
        for bill_id in bills:
            api.approve(bill_id)
        runs = [api.wait_runs(bill_id, 1, timeout=120)[0] for bill_id in bills]
    finally:
        fake_xero.latency = 0.05

    assert [r["status"] for r in runs] == ["COMPLETE"] * 20
    assert fake_xero.auth.refreshes - refreshes == 1
    assert fake_xero.auth.invalid_grants - refused == 0
    assert len(fake_xero.invoices(tenant)) == 20
    assert 1 < fake_xero.max_concurrent(tenant) <= 5


def test_a_custom_connection_needs_no_consent(api: Api, fake_xero: FakeXero) -> None:
    """Client credentials: connected from the start, to the one organisation it is for."""
    credential = api.post(
        "/api/v1/credentials",
        {
            "name": "custom",
            "destination": "xero",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "oauth_grant": "client_credentials",
        },
    )
    assert credential["status"] == "connected"
    xero_config(api, credential["id"])
    account = customer(api, fake_xero, fake_xero.tenant_id)
    bill = api.bill(account["id"], [STANDING], **month(1))
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert run["status"] == "COMPLETE", run
    assert fake_xero.invoice(run["invoice_id"])["Reference"] == bill["id"]
    assert fake_xero.writes()[-1].tenant_id == fake_xero.tenant_id


def test_a_429_holds_the_tenant_back_and_is_no_failure(
    api: Api, fake_xero: FakeXero, tenant: str
) -> None:
    credential = connect(api, tenant)
    config = xero_config(api, credential["id"])
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING])
    fake_xero.fail_next(1, "429", retry_after=2)
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert run["status"] == "COMPLETE", run
    history = api.get(f"/api/v1/events/{run['request_event_id']}")["history"]
    assert [h["outcome"] for h in history] == ["waited", "succeeded"]
    assert "xero:" in history[0]["error_message"]
    assert api.get(f"/api/v1/integrations/{config['id']}")["consecutive_errors"] == 0
    assert len(fake_xero.invoices(tenant)) == 1


def test_a_token_ended_early_is_refreshed_once_and_the_run_goes_on(
    api: Api, fake_xero: FakeXero, tenant: str
) -> None:
    credential = connect(api, tenant)
    xero_config(api, credential["id"])
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING])
    refreshes = fake_xero.auth.refreshes
    fake_xero.fail_next(1, "401")  # Xero ends the access token before its 30 minutes
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert run["status"] == "COMPLETE", run
    assert fake_xero.auth.refreshes - refreshes == 1
    assert api.get(f"/api/v1/credentials/{credential['id']}")["status"] == "connected"


def test_a_validation_error_ends_the_run_with_xeros_own_message(
    api: Api, fake_xero: FakeXero, tenant: str
) -> None:
    credential = connect(api, tenant)
    xero_config(api, credential["id"], default_account_code="999")  # no such account
    account = customer(api, fake_xero, tenant)
    bill = api.bill(account["id"], [STANDING])
    api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["error_type"]) == ("ERROR", "integration.perform.error"), run
    assert "Account code '999' is not a valid code" in run["error_message"]
    assert fake_xero.invoices(tenant) == []
