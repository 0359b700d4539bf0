"""Account filters that cannot be used: refused when saved (a 422 with the position, never a
RecursionError), and, when one is in the database anyway, failing its own config alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from domain.accounts import create_account
from domain.bills import LineItem, generate_bill
from domain.db import transaction
from domain.expressions import MAX_DEPTH
from domain.integrations import configs
from domain.integrations.configs import EntityConfig, IntegrationConfig
from domain.integrations.credentials import create_credential
from domain.integrations.errors import ConfigInvalid
from domain.integrations.runs import IntegrationRun, prepare, start_runs
from domain.organisations import create_organisation
from domain.processing import inbound
from domain.secrets import secret_box
from tests.support.environment import Environment

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}
#: Accepted before the parser had a bound; crashed every bill run of the organisation.
DEEP = "(" * 188 + "code = 'cus_1'" + ")" * 188


def test_saving_a_filter_nested_189_deep_is_invalid_input_with_the_position() -> None:
    with pytest.raises(ValidationError) as raised:
        EntityConfig.model_validate({"account_filter": "(" * 189 + "id" + ")" * 189})
    (error,) = raised.value.errors()
    assert error["loc"] == ("account_filter",)
    assert f"nested deeper than {MAX_DEPTH} levels at position {MAX_DEPTH}" in error["msg"]


@dataclass(frozen=True)
class Org:
    org_id: str
    good_id: str
    bad_id: str


def org_with_a_bad_config(env: Environment, bad_entity_config: dict[str, Any]) -> Org:
    """A good config (no filter) and, saved straight into the database, a bad one."""
    with transaction(env.engine) as session:
        org_id = create_organisation(session, "Acme")[0].id
        credential = create_credential(
            session,
            secret_box(env.settings),
            org_id,
            name="site",
            destination="chargebee",
            site="acme",
            api_key="test_cb_key",
        )
        # ids are ordered: the bad config comes first, so it is met first in the loop
        bad = IntegrationConfig(
            id="int_0bad",
            org_id=org_id,
            name="bad",
            destination="chargebee",
            entity_config=bad_entity_config,
            destination_config={"default_price_id": "cb-default"},
            credential_id=credential.id,
        )
        good = IntegrationConfig(
            id="int_1good",
            org_id=org_id,
            name="good",
            destination="chargebee",
            destination_config={"default_price_id": "cb-default"},
            credential_id=credential.id,
        )
        session.add_all([bad, good])
        session.flush()
    return Org(org_id, good.id, bad.id)


def bill_generated(env: Environment, org: Org) -> dict[str, IntegrationRun]:
    """Generate a bill and start its runs as processing bill.generated does."""
    with transaction(env.engine) as session:
        account = create_account(session, org.org_id, code="cus_1", name="Initech")
        _, event = generate_bill(
            session,
            org.org_id,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[LineItem.model_validate(STANDING)],
        )
        session.flush()
        start_runs(session, inbound(event))
        runs = session.exec(select(IntegrationRun).where(IntegrationRun.org_id == org.org_id))
        return {run.config_id: run for run in runs}


def test_a_stored_filter_too_deep_to_parse_fails_its_config_alone(env: Environment) -> None:
    org = org_with_a_bad_config(env, {"account_filter": DEEP})

    runs = bill_generated(env, org)

    # the good config's run is created and goes out
    assert set(runs) == {org.good_id, org.bad_id}
    with transaction(env.engine) as session:
        prepared = prepare(session, secret_box(env.settings), runs[org.good_id].id, 1)
    assert prepared is not None
    assert prepared.config_id == org.good_id
    # the bad config's run ends in integration.validation.error, saying why
    with pytest.raises(ConfigInvalid) as raised, transaction(env.engine) as session:
        prepare(session, secret_box(env.settings), runs[org.bad_id].id, 1)
    assert raised.value.event_type == "integration.validation.error"
    assert f"nested deeper than {MAX_DEPTH} levels" in str(raised.value)


def test_a_filter_whose_evaluation_raises_fails_its_config_alone(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = org_with_a_bad_config(env, {"account_filter": "code = 'cus_1' OR code = 'crash'"})
    evaluate = configs.evaluate

    def crashing(node: Any, account: Any) -> bool:
        if "crash" in repr(node):
            raise RecursionError("maximum recursion depth exceeded")
        return evaluate(node, account)

    monkeypatch.setattr(configs, "evaluate", crashing)

    runs = bill_generated(env, org)

    assert set(runs) == {org.good_id, org.bad_id}
    with transaction(env.engine) as session:
        assert prepare(session, secret_box(env.settings), runs[org.good_id].id, 1) is not None
    with (
        pytest.raises(ConfigInvalid, match=r"cannot be evaluated .* RecursionError"),
        transaction(env.engine) as session,
    ):
        prepare(session, secret_box(env.settings), runs[org.bad_id].id, 1)


def test_a_filter_that_is_not_text_fails_its_config_alone(env: Environment) -> None:
    org = org_with_a_bad_config(env, {"account_filter": ["code"], "only_send_on_approval": 1})

    runs = bill_generated(env, org)

    assert set(runs) == {org.good_id, org.bad_id}
