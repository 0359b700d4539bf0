"""Enabling an integration config releases its held runs (the service the API and the CLI
call)."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.db import transaction
from domain.events import Event, EventStatus
from domain.integrations.configs import IntegrationConfig, get_config
from domain.integrations.enable import enable_and_release
from domain.integrations.runs import RUN_REQUESTED, IntegrationRun, RunStatus
from domain.organisations import DEFAULT_ORG_ID
from tests.domain import factories
from tests.support.environment import Environment

LINE = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


def disabled_config_with_held_runs(env: Environment, runs: int) -> tuple[str, list[str]]:
    """A disabled config (with errors counted) whose ``runs`` runs of a bill are held."""
    with transaction(env.engine) as session:
        account = create_account(session, DEFAULT_ORG_ID, code=f"cus_{runs}", name="Initech")
        bill, _ = generate_bill(
            session,
            DEFAULT_ORG_ID,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[LineItem.model_validate(LINE)],
        )
        config = IntegrationConfig(
            org_id=DEFAULT_ORG_ID,
            name="off",
            destination="chargebee",
            enabled=False,
            consecutive_errors=10,
            disabled_reason="ten errors in a row",
        )
        session.add(config)
        session.flush()
        held = [
            IntegrationRun(
                org_id=DEFAULT_ORG_ID,
                config_id=config.id,
                bill_id=bill.id,
                trigger="bill.generated",
                trigger_event_id="evt_test",
                status=RunStatus.DISABLED,
            )
            for _ in range(runs)
        ]
        session.add_all(held)
        session.flush()
        return config.id, sorted(run.id for run in held)


def test_enable_and_release_publishes_the_held_runs_in_order_after_commit(
    env: Environment,
) -> None:
    # given a disabled config with two held runs, and another disabled config with one
    config_id, held = disabled_config_with_held_runs(env, 2)
    _, [kept] = disabled_config_with_held_runs(env, 1)
    published = factories.Published(env)

    # when the config is enabled
    enabled = enable_and_release(
        env.engine, lambda session: get_config(session, DEFAULT_ORG_ID, config_id), published
    )

    # then it is enabled with its error count started again
    assert (enabled.config.id, enabled.config.enabled) == (config_id, True)
    with Session(env.engine) as session:
        config = session.get_one(IntegrationConfig, config_id)
        assert (config.enabled, config.consecutive_errors, config.disabled_reason) == (
            True,
            0,
            None,
        )
        runs = {run.id: run for run in session.exec(select(IntegrationRun)).all()}
        requests = set(session.exec(select(Event.id).where(col(Event.type) == RUN_REQUESTED)))
    # and its held runs, only its own, wait again, each with a request event of its own
    assert [runs[run_id].status for run_id in held] == [RunStatus.WAITING] * 2
    assert runs[kept].status == RunStatus.DISABLED
    request_ids = [runs[run_id].request_event_id for run_id in held]
    assert enabled.released == request_ids
    assert requests == set(request_ids)
    # published once, oldest run first, after the commit
    assert published.calls == [[(event_id, RUN_REQUESTED) for event_id in request_ids]]
    assert published.seen == dict.fromkeys(request_ids, EventStatus.PENDING)


def test_enabling_a_config_with_nothing_held_publishes_nothing(env: Environment) -> None:
    config_id, _ = disabled_config_with_held_runs(env, 0)
    published = factories.Published(env)
    enabled = enable_and_release(
        env.engine, lambda session: get_config(session, DEFAULT_ORG_ID, config_id), published
    )
    assert (enabled.config.enabled, enabled.released, published.calls) == (True, [], [])
