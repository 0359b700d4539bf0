"""Bills out to Chargebee end to end: the admin API, a real worker, and the fake
Chargebee, counting the charge items it really received."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlmodel import select

from domain.db import transaction
from domain.integrations.sync import LineState, RemoteLine
from tests.support.billing import Api, prepare_customer, summary
from tests.support.fake_chargebee import FakeChargebee
from tests.support.processes import Stack

PRICES = ("cb-default", "cb-standing", "cb-min-spend", "cb-api-calls", "cb-storage", "cb-debits")

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}
MIN_SPEND = {"type": "MINIMUM_SPEND", "quantity": 1, "unit_price": "10.00", "subtotal": "10.00"}
API_CALLS = {
    "type": "USAGE",
    "product_id": "prod-api",
    "aggregation_id": "agg-calls",
    "quantity": 1500,
    "subtotal": "35.00",
    "bands": [
        {
            "lower_limit": 0,
            "upper_limit": 1000,
            "quantity": 1000,
            "unit_price": "0.02",
            "subtotal": "20.00",
        },
        {"lower_limit": 1000, "quantity": 500, "unit_price": "0.03", "subtotal": "15.00"},
    ],
}


@pytest.fixture
def api(running: Stack, fake_chargebee: FakeChargebee) -> Iterator[Api]:
    fake_chargebee.price(*PRICES)
    client = Api(running.env, running.receiver_url)
    yield client
    client.http.close()


def map_product(api: Api, product: str, item_price: str, config_id: str | None = None) -> None:
    api.post(
        "/api/v1/external-mappings",
        {
            "entity": "product",
            "entity_id": product,
            "external_system": "chargebee",
            "external_table": "item_price",
            "external_id": item_price,
            "integration_config_id": config_id,
        },
    )


def test_a_generated_bill_becomes_charge_items_on_the_pending_invoice(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    map_product(api, "prod-api", "cb-api-calls")
    config = api.config(
        chargebee={
            "standing_charge_item_price_id": "cb-standing",
            "minimum_spend_item_price_id": "cb-min-spend",
        }
    )
    bill = api.bill(account["id"], [STANDING, API_CALLS, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1)
    assert run["status"] == "COMPLETE", run
    assert (run["config_id"], run["items_added"], run["invoice_id"]) == (config["id"], 4, invoice)
    assert summary(fake_chargebee.lines(invoice)) == [
        ("cb-api-calls", 500, 3, 1500),
        ("cb-api-calls", 1000, 2, 2000),
        ("cb-min-spend", 1, 1000, 1000),
        ("cb-standing", 1, 4900, 4900),
    ]
    adds = fake_chargebee.applied("add_charge_item", invoice)
    assert len(adds) == 4
    assert all(call.key and call.key.startswith(run["id"]) for call in adds)
    assert adds[0].form["item_price[date_from]"] == "1790812800"  # 2026-10-01
    assert adds[0].form["item_price[date_to]"] == "1793491199"  # 2026-10-31 23:59:59


def test_only_send_on_approval_waits_for_the_approval(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config(only_send_on_approval=True)
    bill = api.bill(account["id"], [STANDING])
    api.wait_event(bill["event_id"])
    assert api.runs(bill_id=bill["id"]) == []
    assert fake_chargebee.lines(invoice) == []
    approved = api.approve(bill["id"])
    [run] = api.wait_runs(bill["id"], 1)
    assert (run["status"], run["trigger"], run["trigger_event_id"]) == (
        "COMPLETE",
        "bill.approved",
        approved["event_id"],
    )
    assert summary(fake_chargebee.lines(invoice)) == [("cb-default", 1, 4900, 4900)]


def test_a_regenerated_bill_replaces_its_lines_and_never_adds_up_versions(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config(chargebee={"standing_charge_item_price_id": "cb-standing"})
    other = fake_chargebee.pending_invoice("someone-else")  # untouched throughout
    first = api.bill(account["id"], [STANDING, API_CALLS])
    api.wait_runs(first["id"], 1)
    assert len(fake_chargebee.lines(invoice)) == 3

    # when the bill is regenerated with a changed usage line and the standing charge kept
    usage = {"type": "USAGE", "quantity": 2000, "unit_price": "0.02", "subtotal": "40.00"}
    second = api.bill(account["id"], [STANDING, usage])
    assert (second["id"], second["version"]) == (first["id"], 2)
    runs = api.wait_runs(first["id"], 2)
    assert [run["status"] for run in runs] == ["COMPLETE", "COMPLETE"]
    assert (runs[1]["items_added"], runs[1]["items_removed"], runs[1]["bill_version"]) == (1, 2, 2)

    # then the invoice holds version 2 exactly
    assert summary(fake_chargebee.lines(invoice)) == [
        ("cb-default", 2000, 2, 4000),
        ("cb-standing", 1, 4900, 4900),
    ]
    assert len(fake_chargebee.applied("delete_line_items", invoice)) == 1
    # approving sends nothing more: the invoice already holds this version
    api.approve(first["id"])
    api.wait_runs(first["id"], 3)
    assert len(fake_chargebee.applied("add_charge_item", invoice)) == 4
    assert len(fake_chargebee.applied("delete_line_items", invoice)) == 1
    assert fake_chargebee.lines(other) == []


def test_racing_regenerations_leave_exactly_the_latest_version(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    """Versions generated faster than they are sent: runs for one bill take turns, and
    each sends the bill as it is when it runs, so the last word is the latest version."""
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config()
    versions = [
        [{"type": "USAGE", "quantity": n, "unit_price": "1", "subtotal": str(n)}] * (n % 3 + 1)
        for n in range(1, 7)
    ]
    bill_id = ""
    for lines in versions:
        bill_id = api.bill(account["id"], lines)["id"]
    runs = api.wait_runs(bill_id, len(versions), timeout=90)
    assert {run["status"] for run in runs} == {"COMPLETE"}
    last = versions[-1]
    assert summary(fake_chargebee.lines(invoice)) == [("cb-default", 6, 100, 600)] * len(last)


def test_create_invoice_makes_an_invoice_and_replaces_it_when_the_bill_changes(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account = api.account()
    api.config(chargebee={"create_invoice": True})
    bill = api.bill(account["id"], [STANDING])
    [run] = api.wait_runs(bill["id"], 1)
    [created] = fake_chargebee.invoices_of(account["code"])
    assert (run["invoice_id"], created["status"]) == (created["id"], "payment_due")
    assert summary(created["line_items"]) == [("cb-default", 1, 4900, 4900)]

    api.bill(account["id"], [STANDING, MIN_SPEND])
    runs = api.wait_runs(bill["id"], 2)
    invoices = {i["id"]: i for i in fake_chargebee.invoices_of(account["code"])}
    assert invoices[created["id"]]["status"] == "voided"
    replacement = invoices[runs[1]["invoice_id"]]
    assert replacement["status"] == "payment_due"
    assert summary(replacement["line_items"]) == [
        ("cb-default", 1, 1000, 1000),
        ("cb-default", 1, 4900, 4900),
    ]


def test_multidecimal_values_are_rounded_half_up(api: Api, fake_chargebee: FakeChargebee) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config(
        chargebee={
            "use_multidecimal": True,
            "multidecimal_price_places": 3,
            "multidecimal_units_places": 3,
        }
    )
    bill = api.bill(
        account["id"],
        [
            {"type": "USAGE", "quantity": "0.13333", "unit_price": "0.16666", "subtotal": "0.02"},
        ],
    )
    api.wait_runs(bill["id"], 1)
    [add] = fake_chargebee.applied("add_charge_item", invoice)
    assert add.form["item_price[quantity_in_decimal]"] == "0.133"
    assert add.form["item_price[unit_price_in_decimal]"] == "0.167"


def test_excluded_types_sorting_and_type_mapping(api: Api, fake_chargebee: FakeChargebee) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config(
        excluded_line_item_types=["CREDIT_MEMO"],
        chargebee={
            "price_id_mapping": {"DEBIT_MEMO": "cb-debits"},
            "sort_line_items_by": "subtotal",
        },
    )
    bill = api.bill(
        account["id"],
        [
            {"type": "DEBIT_MEMO", "quantity": 1, "unit_price": "30", "subtotal": "30"},
            {"type": "CREDIT_MEMO", "quantity": 1, "unit_price": "-5", "subtotal": "-5"},
            STANDING,
            {"type": "DEBIT_MEMO", "quantity": 1, "unit_price": "20", "subtotal": "20"},
        ],
    )
    api.wait_runs(bill["id"], 1)
    adds = fake_chargebee.applied("add_charge_item", invoice)
    assert [
        (a.form["item_price[item_price_id]"], a.form["item_price[unit_price]"]) for a in adds
    ] == [
        ("cb-debits", "2000"),
        ("cb-debits", "3000"),
        ("cb-default", "4900"),
    ]


def test_per_product_split_and_config_only_mappings(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    config = api.config(
        enforce_external_mappings_for_config=True,
        chargebee={"split_usage_line_items": "per_product"},
    )
    map_product(api, "prod-api", "cb-storage")  # untied: ignored by this config
    map_product(api, "prod-api", "cb-api-calls", config_id=config["id"])
    bill = api.bill(account["id"], [API_CALLS, {**API_CALLS, "aggregation_id": "agg-2"}])
    api.wait_runs(bill["id"], 1)
    # 3000 calls for 70.00 is not a whole number of cents each: one item at the total
    assert summary(fake_chargebee.lines(invoice)) == [("cb-api-calls", 1, 7000, 7000)]


def test_runs_go_to_the_configs_that_apply_to_the_account(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    uk, uk_invoice = prepare_customer(fake_chargebee, api, custom_fields={"country": "UK"})
    us, us_invoice = prepare_customer(fake_chargebee, api, custom_fields={"country": "US"})
    only_uk = api.config(name="allow", account_ids=[uk["id"]])
    not_uk = api.config(name="deny", restricted_account_ids=[uk["id"]])
    filtered = api.config(
        name="filter", account_filter='custom_fields != null AND custom_fields.country == "UK"'
    )
    disabled = api.config(name="off")
    api.post(f"/api/v1/integrations/{disabled['id']}/disable")

    uk_bill = api.bill(uk["id"], [STANDING])
    us_bill = api.bill(us["id"], [STANDING])
    uk_runs = api.wait_runs(uk_bill["id"], 3)
    us_runs = api.wait_runs(us_bill["id"], 2)
    assert sorted((r["config_id"], r["status"]) for r in uk_runs) == sorted(
        [
            (only_uk["id"], "COMPLETE"),
            (filtered["id"], "COMPLETE"),
            (disabled["id"], "DISABLED"),
        ]
    )
    assert sorted((r["config_id"], r["status"]) for r in us_runs) == sorted(
        [
            (not_uk["id"], "COMPLETE"),
            (disabled["id"], "DISABLED"),
        ]
    )
    assert len(fake_chargebee.lines(uk_invoice)) == 2  # one per config that sent it
    assert len(fake_chargebee.lines(us_invoice)) == 1


def error_events(api: Api, event_type: str) -> list[dict]:
    return api.get("/api/v1/events", type=event_type)


def test_each_failure_kind_ends_in_its_own_error_event(
    api: Api, fake_chargebee: FakeChargebee
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    mapped_account = api.account()
    cases = {
        "integration.authentication.error": api.config(name="unconnected", credential_id=None),
        "integration.perform.error": api.config(
            name="bad price", chargebee={"default_price_id": "cb-nope"}
        ),
        "integration.validation.error": api.config(
            name="no price", chargebee={"default_price_id": None}
        ),
        "integration.missingaccountmapping.error": api.config(
            name="needs mapping",
            use_external_mapping_account_code=True,
            account_ids=[account["id"]],
        ),
    }
    wrong_key = api.config(name="wrong key", credential_id=api.credential(api_key="wrong")["id"])
    bill = api.bill(account["id"], [STANDING])
    runs = {run["config_id"]: run for run in api.wait_runs(bill["id"], 5)}
    for event_type, config in cases.items():
        run = runs[config["id"]]
        assert run["error_type"] == event_type, run
        [event] = [e for e in error_events(api, event_type) if e["id"] == run["error_event_id"]]
        assert event["caused_by"] == run["request_event_id"]
    assert runs[cases["integration.authentication.error"]["id"]]["status"] == "AUTH_FAILED"
    assert runs[wrong_key["id"]]["status"] == "AUTH_FAILED"
    assert "cb-nope" in runs[cases["integration.perform.error"]["id"]]["error_message"]
    assert (
        "has no Chargebee item price"
        in runs[cases["integration.validation.error"]["id"]]["error_message"]
    )
    assert fake_chargebee.lines(invoice) == []

    # with the mapping in place, the account's mapped customer gets the items
    customer_invoice = fake_chargebee.pending_invoice("cb-mapped-customer")
    api.post(
        "/api/v1/external-mappings",
        {
            "entity": "account",
            "entity_id": mapped_account["id"],
            "external_system": "chargebee",
            "external_table": "customer",
            "external_id": "cb-mapped-customer",
        },
    )
    mapped_config = api.config(
        name="mapped", use_external_mapping_account_code=True, account_ids=[mapped_account["id"]]
    )
    mapped_bill = api.bill(mapped_account["id"], [STANDING])
    mapped_runs = api.wait_runs(mapped_bill["id"], 3)
    [ok] = [r for r in mapped_runs if r["config_id"] == mapped_config["id"]]
    assert ok["status"] == "COMPLETE"
    assert len(fake_chargebee.lines(customer_invoice)) == 1

    # an error event is marked actioned once dealt with
    event_id = runs[wrong_key["id"]]["error_event_id"]
    actioned = api.post(f"/api/v1/events/{event_id}/action")
    assert actioned["actioned_at"] is not None


@pytest.mark.parametrize(
    ("fault", "count", "retry_after"),
    # Retry-After 1 s against a first backoff of at most 0.2 s (the test policy)
    [("500", 2, None), ("429", 1, 1), ("hang", 1, None), ("apply_then_hang", 1, None)],
)
def test_transient_faults_retry_and_never_charge_twice(
    api: Api, fake_chargebee: FakeChargebee, fault: str, count: int, retry_after: int | None
) -> None:
    account, invoice = prepare_customer(fake_chargebee, api)
    api.config(chargebee={"standing_charge_item_price_id": "cb-standing"})
    fake_chargebee.fail_next(count, fault, retry_after=retry_after)
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1, timeout=90)
    assert run["status"] == "COMPLETE", run
    assert run["attempts"] == count + 1
    assert summary(fake_chargebee.lines(invoice)) == [
        ("cb-default", 1, 1000, 1000),
        ("cb-standing", 1, 4900, 4900),
    ]
    assert len(fake_chargebee.applied("add_charge_item", invoice)) == 2
    history = api.get(f"/api/v1/events/{run['request_event_id']}")["history"]
    assert [h["outcome"] for h in history] == ["retry"] * count + ["succeeded"]
    if retry_after:
        waited = _at(history[1]["started_at"]) - _at(history[0]["finished_at"])
        assert waited.total_seconds() >= retry_after - 0.05


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_lines_claimed_on_another_sites_invoice_with_the_same_id_are_not_ours(
    api: Api, fake_chargebee: FakeChargebee, running: Stack
) -> None:
    # given another organisation whose own site has an invoice with our invoice's id, and
    # whose run recorded on it lines with the very ids this fake gives our next lines
    account, invoice = prepare_customer(fake_chargebee, api)
    other = Api(running.env, running.receiver_url)
    try:
        site = {"name": "cb", "site": "elsewhere", "api_key": "other_key"}
        credential = other.post("/api/v1/credentials", site)
        their_config = other.config(credential_id=credential["id"], only_send_on_approval=True)
        their_bill = other.bill(other.account()["id"], [STANDING])
    finally:
        other.http.close()
    next_id = int(invoice.removeprefix("inv_")) + 1
    theirs = [f"li_{n}" for n in range(next_id, next_id + 10)]
    with transaction(running.env.engine) as session:
        for line_id in theirs:
            session.add(
                RemoteLine(
                    org_id=other.org_id,
                    config_id=their_config["id"],
                    bill_id=their_bill["id"],
                    credential_id=credential["id"],
                    site="elsewhere",
                    invoice_id=invoice,
                    run_id="run_elsewhere",
                    item_key=line_id,
                    item_price_id="cb-default",
                    fingerprint="0" * 32,
                    state=LineState.ADDED,
                    idempotency_key=f"run_elsewhere:{line_id}",
                    line_item_id=line_id,
                )
            )

    # when our bill goes out to our invoice
    api.config(chargebee={"standing_charge_item_price_id": "cb-standing"})
    bill = api.bill(account["id"], [STANDING, MIN_SPEND])
    [run] = api.wait_runs(bill["id"], 1)

    # then our new lines are found as ours, and their claims are left alone
    assert run["status"] == "COMPLETE", run
    lines = fake_chargebee.lines(invoice)
    assert summary(lines) == [("cb-default", 1, 1000, 1000), ("cb-standing", 1, 4900, 4900)]
    with transaction(running.env.engine) as session:
        ours = session.exec(
            select(RemoteLine.line_item_id).where(RemoteLine.bill_id == bill["id"])
        ).all()
        kept = session.exec(
            select(RemoteLine.line_item_id).where(RemoteLine.org_id == other.org_id)
        ).all()
    assert sorted(ours) == sorted(line["id"] for line in lines)
    assert sorted(kept) == sorted(theirs)
