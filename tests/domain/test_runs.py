"""``prepare``: what a run does when its worker comes to it."""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.db import transaction
from domain.handlers import InboundEvent
from domain.integrations.runs import IntegrationRun, RunStatus, complete, prepare, start_runs
from domain.organisations import DEFAULT_ORG_ID
from domain.processing import inbound
from domain.secrets import secret_box
from tests.domain import factories
from tests.support.environment import Environment

LINE = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def a_run(env: Environment) -> str:
    with transaction(env.engine) as session:
        factories.chargebee_config(session, env, DEFAULT_ORG_ID)
        account = create_account(session, DEFAULT_ORG_ID, code="cus_1", name="Initech")
        _, generated = generate_bill(
            session,
            DEFAULT_ORG_ID,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[LineItem.model_validate(LINE)],
        )
        event: InboundEvent = inbound(generated)
        start_runs(session, event)
        return session.exec(select(IntegrationRun.id)).one()


def test_a_late_worker_leaves_a_complete_run_complete(env: Environment) -> None:
    # given a run another worker finished while this one's lease ran out
    run_id = a_run(env)
    box = secret_box(env.settings)
    with transaction(env.engine) as session:
        assert prepare(session, box, run_id, 1) is not None
        complete(
            session, run_id, invoice_id="inv_1", items_added=1, items_removed=0, bill_version=1
        )
    # when the late worker prepares it
    with transaction(env.engine) as session:
        prepared = prepare(session, box, run_id, 2)
    # then there is nothing to send, and the run still shows what was done
    assert prepared is None
    with transaction(env.engine) as session:
        run = session.get(IntegrationRun, run_id)
        assert run is not None
        assert (run.status, run.attempts, run.invoice_id) == (RunStatus.COMPLETE, 1, "inv_1")
