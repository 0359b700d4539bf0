"""Bills out to NetSuite end to end: credentials through the admin API (M2M with a signed
JWT, and TBA), real workers, and the fake NetSuite, which verifies both, keeps invoices by
external id, refuses calls over the account's concurrency limit and loses answers on
request."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.billing import (
    Api,
    api_on,
    destination_config,
    external_mapping,
    running_stack,
)
from tests.support.fake_netsuite import (
    CLIENT_ID,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN_ID,
    TOKEN_SECRET,
    Books,
    Call,
    FakeNetSuite,
    open_books,
    private_pem,
    public_pem,
)
from tests.support.processes import Stack

ACCOUNT = "7654321"
CENT = Decimal("0.01")
STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def usage(quantity: int, unit: str = "0.0125", subtotal: str | None = None) -> dict[str, Any]:
    amount = subtotal or str((Decimal(quantity) * Decimal(unit)).quantize(CENT, ROUND_HALF_UP))
    return {
        "type": "USAGE",
        "product_id": "api",
        "quantity": quantity,
        "unit_price": unit,
        "subtotal": amount,
    }


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def fake_netsuite(key: rsa.RSAPrivateKey) -> Iterator[FakeNetSuite]:
    server = FakeNetSuite(account_id=ACCOUNT, hang_seconds=3).start()
    public = public_pem(key)
    server.register_certificate(CLIENT_ID, "cert-1", public)
    server.register_certificate(CLIENT_ID, "cert-revoked", public)
    server.revoke_certificate("cert-revoked")
    server.register_tba(CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def books(fake_netsuite: FakeNetSuite) -> Books:
    return open_books(fake_netsuite)


@pytest.fixture(scope="module")
def netsuite_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_netsuite: FakeNetSuite
) -> Iterator[Stack]:
    """Receiver, two workers (4 tasks at once each) and beat, talking to the fake NetSuite."""
    outside = {
        "METERBRIDGE_NETSUITE_URL_TEMPLATE": fake_netsuite.url,
        "METERBRIDGE_HTTP_TIMEOUT_SECONDS": "1.5",
    }
    yield from running_stack(tmp_path_factory.mktemp("netsuite"), outside, concurrency=4)


@pytest.fixture
def api(netsuite_stack: Stack) -> Iterator[Api]:
    yield from api_on(netsuite_stack)


def m2m_credential(api: Api, key: rsa.RSAPrivateKey, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "netsuite m2m",
        "destination": "netsuite",
        "auth": "m2m",
        "account_id": ACCOUNT,
        "client_id": CLIENT_ID,
        "certificate_id": "cert-1",
        "private_key": private_pem(key),
        **fields,
    }
    return api.post("/api/v1/credentials", body)


def tba_credential(api: Api) -> dict[str, Any]:
    body = {
        "name": "netsuite tba",
        "destination": "netsuite",
        "auth": "tba",
        "account_id": ACCOUNT,
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "token_id": TOKEN_ID,
        "token_secret": TOKEN_SECRET,
    }
    return api.post("/api/v1/credentials", body)


def netsuite_config(api: Api, credential_id: str, books: Books, **options: Any) -> dict[str, Any]:
    defaults = {
        "use_external_mapping_account_code": True,
        "subsidiary_id": books.subsidiary,
        "standing_charge_item_price_id": books.fee,
    }
    return destination_config(api, "netsuite", credential_id, **{**defaults, **options})


def customer(api: Api, fake: FakeNetSuite, books: Books) -> dict[str, Any]:
    """An account mapped to a NetSuite customer, its usage product to a NetSuite item."""
    account = api.account()
    ns_customer = fake.customer(account["name"], subsidiary=books.subsidiary)
    external_mapping(api, "account", account["id"], "netsuite", "customer", ns_customer)
    external_mapping(api, "product", "api", "netsuite", "item", books.usage)
    return {**account, "netsuite_customer": ns_customer}


def lines(invoice: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """What a person checks on the invoice: item, quantity, rate, amount."""
    return [
        (line["item"]["id"], line["quantity"], line["rate"], line["amount"])
        for line in invoice["item"]["items"]
    ]


def upserts(fake: FakeNetSuite, bill_id: str) -> list[Call]:
    """The upserts of the bill's invoice that NetSuite applied (an answer lost or not)."""
    return [c for c in fake.applied("upsert") if c.path.endswith(f"/invoice/eid:{bill_id}")]


_months = itertools.count(1)


def month() -> dict[str, str]:
    """A bill period no other bill of the module has, so one account can have many."""
    year, index = divmod(next(_months) - 1, 12)
    return {
        "period_start": f"{2030 + year}-{index + 1:02d}-01",
        "period_end": f"{2030 + year + (index + 1) // 12}-{(index + 1) % 12 + 1:02d}-01",
    }


def test_every_generation_updates_one_invoice_and_approval_updates_it_again(
    api: Api, fake_netsuite: FakeNetSuite, books: Books, key: rsa.RSAPrivateKey
) -> None:
    credential = m2m_credential(api, key)
    assert credential["status"] == "connected"
    assert "private_key" not in str(credential)
    netsuite_config(api, credential["id"], books, due_days=14)
    account = customer(api, fake_netsuite, books)

    # the first generation creates the invoice, named by the bill's id
    bill = api.bill(account["id"], [STANDING, usage(1234)])
    [first] = api.wait_runs(bill["id"], 1)
    assert first["status"] == "COMPLETE", first
    invoice = fake_netsuite.invoice_by_external_id(bill["id"])
    assert invoice is not None
    assert first["invoice_id"] == invoice["id"]
    assert (invoice["entity"]["id"], invoice["subsidiary"]["id"]) == (
        account["netsuite_customer"],
        books.subsidiary,
    )
    assert (invoice["tranDate"], invoice["dueDate"]) == ("2026-11-01", "2026-11-15")
    assert invoice["memo"] == (
        f"meterbridge bill {bill['id']}, version 1: 2026-10-01 to 2026-11-01"
    )
    assert lines(invoice) == [
        (books.fee, 1.0, 49.0, 49.0),
        (books.usage, 1234.0, 0.0125, 15.43),
    ]

    # a regeneration: the same invoice, holding the latest lines only
    regenerated = api.bill(account["id"], [STANDING, usage(2000), usage(10, "1.00")])
    assert regenerated["version"] == 2
    second = api.wait_runs(bill["id"], 2)[1]
    assert second["status"] == "COMPLETE", second
    assert (second["invoice_id"], second["items_added"], second["items_removed"]) == (
        invoice["id"],
        3,
        2,
    )
    invoice = fake_netsuite.invoice_by_external_id(bill["id"])
    assert invoice is not None
    assert lines(invoice) == [
        (books.fee, 1.0, 49.0, 49.0),
        (books.usage, 2000.0, 0.0125, 25.0),
        (books.usage, 10.0, 1.0, 10.0),
    ]
    assert (invoice["total"], invoice["memo"].split(": ")[0]) == (
        84.0,
        f"meterbridge bill {bill['id']}, version 2",
    )

    # approval sends the same invoice again, with the version approved
    api.approve(bill["id"])
    third = api.wait_runs(bill["id"], 3)[2]
    assert third["status"] == "COMPLETE", third
    assert (third["trigger"], third["invoice_id"]) == ("bill.approved", invoice["id"])
    sent = upserts(fake_netsuite, bill["id"])
    assert len(sent) == 3
    assert all(c.query == {"replace": "item"} for c in sent)
    assert [i["id"] for i in fake_netsuite.invoices() if i["externalId"] == bill["id"]] == [
        invoice["id"]
    ]
    assert fake_netsuite.invoice_by_external_id(bill["id"])["total"] == 84.0  # type: ignore[index]


def test_a_lost_answer_leaves_one_invoice(
    api: Api, fake_netsuite: FakeNetSuite, books: Books
) -> None:
    credential = tba_credential(api)
    netsuite_config(api, credential["id"], books)
    account = customer(api, fake_netsuite, books)
    # the account's own subsidiary wins over the config's
    europe = fake_netsuite.subsidiary("Meterbridge B.V.")
    external_mapping(api, "account", account["id"], "netsuite", "subsidiary", europe)
    # NetSuite makes the invoice; its answer never comes
    fake_netsuite.fail_next(1, "apply_then_hang", endpoint="upsert")

    bill = api.bill(account["id"], [STANDING, usage(400)], **month())
    [run] = api.wait_runs(bill["id"], 1)

    assert run["status"] == "COMPLETE", run
    assert run["attempts"] == 2
    [invoice] = [i for i in fake_netsuite.invoices() if i["externalId"] == bill["id"]]
    assert (run["invoice_id"], invoice["subsidiary"]["id"]) == (invoice["id"], europe)
    assert lines(invoice) == [(books.fee, 1.0, 49.0, 49.0), (books.usage, 400.0, 0.0125, 5.0)]
    sent = upserts(fake_netsuite, bill["id"])
    assert [c.auth for c in sent] == ["tba", "tba"]  # sent twice, applied twice, one invoice


def test_a_revoked_certificate_ends_the_run_auth_failed(
    api: Api, fake_netsuite: FakeNetSuite, books: Books, key: rsa.RSAPrivateKey
) -> None:
    credential = m2m_credential(api, key, certificate_id="cert-revoked")
    netsuite_config(api, credential["id"], books)
    account = customer(api, fake_netsuite, books)

    bill = api.bill(account["id"], [STANDING], **month())
    [run] = api.wait_runs(bill["id"], 1)

    assert (run["status"], run["error_type"]) == (
        "AUTH_FAILED",
        "integration.authentication.error",
    ), run
    assert "invalid_client: certificate cert-revoked is revoked" in run["error_message"]
    shown = api.get(f"/api/v1/credentials/{credential['id']}")
    assert shown["status"] == "needs_reconnect"
    assert fake_netsuite.invoice_by_external_id(bill["id"]) is None


def test_a_refused_invoice_ends_in_perform_error_with_netsuites_detail(
    api: Api, fake_netsuite: FakeNetSuite, books: Books
) -> None:
    credential = tba_credential(api)
    netsuite_config(api, credential["id"], books, standing_charge_item_price_id="999999")
    account = customer(api, fake_netsuite, books)

    bill = api.bill(account["id"], [STANDING, usage(10)], **month())
    [run] = api.wait_runs(bill["id"], 1)

    assert (run["status"], run["error_type"], run["attempts"]) == (
        "ERROR",
        "integration.perform.error",
        1,
    ), run
    assert run["error_message"].endswith(
        "USER_ERROR: Error while accessing a resource. You have entered an Invalid Field Value "
        "999999 for the following field: item (at item.items[0])"
    )
    assert fake_netsuite.invoice_by_external_id(bill["id"]) is None


def test_twenty_runs_keep_to_the_accounts_concurrency(
    api: Api, fake_netsuite: FakeNetSuite, books: Books, key: rsa.RSAPrivateKey
) -> None:
    """Eight worker slots, NetSuite's limit of five calls at once on the account (the
    credential's ``concurrent_calls`` by default): no call is ever refused for it, and one
    signed JWT serves every run."""
    credential = m2m_credential(api, key)
    netsuite_config(api, credential["id"], books)
    account = customer(api, fake_netsuite, books)
    assert fake_netsuite.concurrency_limit == 5
    mark, asked = len(fake_netsuite.calls), len(fake_netsuite.token_requests)

    fake_netsuite.latency = 0.5
    try:
        bills = [api.bill(account["id"], [STANDING], **month())["id"] for _ in range(20)]
        runs = [api.wait_runs(bill_id, 1, timeout=120)[0] for bill_id in bills]
    finally:
        fake_netsuite.latency = 0.0

    assert [r["status"] for r in runs] == ["COMPLETE"] * 20
    record_calls = [c for c in fake_netsuite.calls[mark:] if c.endpoint != "token"]
    assert [c for c in record_calls if c.status == 429] == []
    assert 1 < most_at_once(record_calls) <= 5
    assert len(fake_netsuite.token_requests) - asked == 1
    assert len({run["invoice_id"] for run in runs}) == 20


def most_at_once(calls: list[Call]) -> int:
    """The most of ``calls`` that were in flight at one moment."""
    edges = sorted(
        [(c.at, 1) for c in calls] + [(c.ended or c.at, -1) for c in calls],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_a_private_key_that_cannot_be_read_is_refused_naming_the_field(api: Api) -> None:
    answer = api.http.post(
        "/api/v1/credentials",
        json={
            "name": "x",
            "destination": "netsuite",
            "auth": "m2m",
            "account_id": ACCOUNT,
            "client_id": CLIENT_ID,
            "certificate_id": "cert-1",
            "private_key": f"not a key {uuid.uuid4().hex}",
        },
    )
    assert answer.status_code == 422, answer.text
    assert "private_key" in answer.text
    assert "not a PEM private key" in answer.text
