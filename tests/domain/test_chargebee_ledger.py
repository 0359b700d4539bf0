"""Which lines on a Chargebee invoice are meterbridge's: claims are keyed by organisation,
site and invoice id, because Chargebee numbers invoices per site and two sites can each
have an invoice ``inv_1``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from alembic import command

from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.db import transaction
from domain.destinations.chargebee.items import ChargeItem
from domain.integrations import ledger
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import create_credential
from domain.integrations.runs import IntegrationRun, Prepared, prepare
from domain.integrations.sync import RemoteLine, plan_sync
from domain.organisations import create_organisation
from domain.schema import alembic_config, upgrade
from domain.secrets import secret_box
from tests.support.environment import Environment

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}
MIN_SPEND = {"type": "MINIMUM_SPEND", "quantity": 1, "unit_price": "10.00", "subtotal": "10.00"}
INVOICE = "inv_1"  # the same invoice id on every site


@dataclass(frozen=True)
class Customer:
    org_id: str
    config_id: str
    credential_id: str
    bill_id: str


def customer(env: Environment, site: str, *, org_id: str | None = None) -> Customer:
    """An organisation (new unless given) whose config sends a two-line bill to ``site``."""
    with transaction(env.engine) as session:
        if org_id is None:
            org_id = create_organisation(session, f"org on {site}")[0].id
        credential = create_credential(
            session,
            secret_box(env.settings),
            org_id,
            name=site,
            destination="chargebee",
            site=site,
            api_key="test_cb_key",
        )
        config = IntegrationConfig(
            org_id=org_id,
            name=f"Chargebee {site}",
            destination="chargebee",
            destination_config={"default_price_id": "cb-default"},
            credential_id=credential.id,
        )
        session.add(config)
        account = create_account(session, org_id, code=f"cus_{site}", name="Initech")
        bill, _ = generate_bill(
            session,
            org_id,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[LineItem.model_validate(STANDING), LineItem.model_validate(MIN_SPEND)],
        )
        session.flush()
        return Customer(org_id, config.id, credential.id, bill.id)


def run_for(env: Environment, who: Customer) -> Prepared:
    """A run of the customer's config for its bill, prepared as the worker prepares it."""
    with transaction(env.engine) as session:
        run = IntegrationRun(
            org_id=who.org_id,
            config_id=who.config_id,
            bill_id=who.bill_id,
            trigger="bill.generated",
            trigger_event_id="evt_test",
        )
        session.add(run)
        session.flush()
        prepared = prepare(session, secret_box(env.settings), run.id, 1)
    assert prepared is not None
    return prepared


def record(env: Environment, prepared: Prepared, item: ChargeItem, line_id: str) -> None:
    """What a run records around adding the item to ``INVOICE``."""
    line = ledger.begin_add(env.engine, prepared, INVOICE, item, set())
    assert line.id is not None
    ledger.finish_add(env.engine, line.id, line_id)


def line_ids(lines: list[RemoteLine]) -> list[str | None]:
    return [line.line_item_id for line in lines]


def test_another_organisations_invoice_with_the_same_id_is_not_ours(env: Environment) -> None:
    # given two organisations whose sites each hold an invoice inv_1 with a line of theirs
    alpha, beta = customer(env, "alpha"), customer(env, "beta")
    run_alpha, run_beta = run_for(env, alpha), run_for(env, beta)
    record(env, run_alpha, run_alpha.items[0], "li_a1")
    record(env, run_alpha, run_alpha.items[1], "li_a2")
    record(env, run_beta, run_beta.items[0], "li_b1")

    # then each run claims only its own site's lines
    assert ledger.claimed_line_ids(env.engine, run_beta, INVOICE) == {"li_b1"}
    assert ledger.claimed_line_ids(env.engine, run_alpha, INVOICE) == {"li_a1", "li_a2"}
    assert line_ids(ledger.lines_on(env.engine, run_beta, INVOICE)) == ["li_b1"]


def test_two_credentials_of_one_organisation_keep_their_invoices_apart(
    env: Environment,
) -> None:
    # given one organisation with two configs on two sites, each site with an inv_1
    alpha = customer(env, "alpha")
    beta = customer(env, "beta", org_id=alpha.org_id)
    run_alpha, run_beta = run_for(env, alpha), run_for(env, beta)
    record(env, run_alpha, run_alpha.items[0], "li_1")
    record(env, run_beta, run_beta.items[0], "li_2")

    assert ledger.claimed_line_ids(env.engine, run_alpha, INVOICE) == {"li_1"}
    assert ledger.claimed_line_ids(env.engine, run_beta, INVOICE) == {"li_2"}


def test_a_run_on_another_site_never_deletes_the_lines_of_an_invoice_with_the_same_id(
    env: Environment,
) -> None:
    # given a config that put its bill's two lines on inv_1 of site alpha...
    alpha = customer(env, "alpha")
    first = run_for(env, alpha)
    record(env, first, first.items[0], "li_1")
    record(env, first, first.items[1], "li_2")
    # ... and is then connected to site beta, whose own inv_1 holds two lines li_1, li_2
    beta = customer(env, "beta", org_id=alpha.org_id)
    with transaction(env.engine) as session:
        config = session.get(IntegrationConfig, alpha.config_id)
        assert config is not None
        config.credential_id = beta.credential_id
        session.add(config)
    on_beta = run_for(env, alpha)
    assert (on_beta.site, on_beta.credential_id) == ("beta", beta.credential_id)

    # when the run on beta decides what to do with inv_1 for a bill that now needs one item
    recorded = ledger.lines_on(env.engine, on_beta, INVOICE)
    plan = plan_sync(on_beta.items[:1], recorded, {"li_1", "li_2"})

    # then none of beta's lines is taken for the bill's: nothing is deleted or kept
    assert line_ids(plan.delete) == []
    assert (recorded, plan.keep, plan.forget) == ([], [], [])
    assert [item.key for item in plan.add] == [on_beta.items[0].key]
    assert ledger.claimed_line_ids(env.engine, on_beta, INVOICE) == set()
    # and the lines stay the bill's on site alpha
    assert line_ids(ledger.lines_on(env.engine, first, INVOICE)) == ["li_1", "li_2"]


def test_the_migration_gives_existing_lines_their_configs_credential_and_site(
    env: Environment,
) -> None:
    # given lines recorded before 0005, one of them by a config since disconnected
    connected, disconnected = customer(env, "alpha"), customer(env, "beta")
    run_connected, run_disconnected = run_for(env, connected), run_for(env, disconnected)
    record(env, run_connected, run_connected.items[0], "li_1")
    record(env, run_disconnected, run_disconnected.items[0], "li_2")
    with transaction(env.engine) as session:
        config = session.get(IntegrationConfig, disconnected.config_id)
        assert config is not None
        config.credential_id = None
        session.add(config)
    command.downgrade(alembic_config(env.engine), "0004")

    # when the database is migrated
    upgrade(env.engine)

    # then a line takes its config's credential and site, or stays unknown (no run's)
    with env.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT line_item_id, credential_id, site FROM remote_line ORDER BY line_item_id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("li_1", connected.credential_id, "alpha"),
        ("li_2", None, None),
    ]
    assert ledger.claimed_line_ids(env.engine, run_connected, INVOICE) == {"li_1"}
    assert ledger.claimed_line_ids(env.engine, run_disconnected, INVOICE) == set()
