"""An external mapping can only name the organisation's own objects: another
organisation's id is refused exactly as an id that does not exist, so nothing leaks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.accounts import create_account
from domain.db import transaction
from domain.errors import NotFound
from domain.integrations.configs import IntegrationConfig
from domain.mappings import MappedEntity, create_mapping, list_mappings
from domain.organisations import create_organisation
from domain.subscriptions.projection import AccountPlan
from tests.support.environment import Environment


def _mapping(entity: str, entity_id: str, config_id: str | None = None) -> dict[str, Any]:
    return {
        "entity": entity,
        "entity_id": entity_id,
        "external_system": "chargebee",
        "external_table": "customer",
        "external_id": "cus_1",
        "integration_config_id": config_id,
    }


def test_a_mapping_to_another_organisations_object_is_refused_like_a_missing_one(
    env: Environment,
) -> None:
    with transaction(env.engine) as session:
        ours = create_organisation(session, "Ours")[0].id
        theirs = create_organisation(session, "Theirs")[0].id
        account = create_account(session, theirs, code="cus_1", name="Theirs Ltd")
        plan = AccountPlan(
            org_id=theirs,
            account_id=account.id,
            plan_id="plan_gold",
            provider="chargebee",
            external_subscription_id="sub_1",
            external_customer_id="cus_1",
            external_plan_id="gold",
            status="active",
            start_at=datetime(2026, 1, 1, tzinfo=UTC),
            version="1",
        )
        config = IntegrationConfig(org_id=theirs, name="theirs", destination="chargebee")
        session.add_all([plan, config])
        session.flush()
        ids = {"account": account.id, "plan": plan.id, "config": config.id}

    refusals = []
    for entity, theirs_id, missing_id in [
        (MappedEntity.ACCOUNT, ids["account"], "acc_missing"),
        (MappedEntity.ACCOUNT_PLAN, ids["plan"], "ap_missing"),
    ]:
        for entity_id in (theirs_id, missing_id):
            with pytest.raises(NotFound) as raised, transaction(env.engine) as session:
                create_mapping(session, ours, **_mapping(entity, entity_id))
            refusals.append(str(raised.value).replace(entity_id, "<id>"))
    with pytest.raises(NotFound), transaction(env.engine) as session:
        create_mapping(session, ours, **_mapping("product", "p", ids["config"]))

    # the same words for theirs and for missing, and nothing was recorded
    assert refusals[0] == refusals[1]
    assert refusals[2] == refusals[3]
    with transaction(env.engine) as session:
        assert list_mappings(session, ours) == []


def test_a_mapping_to_the_organisations_own_account_is_made(env: Environment) -> None:
    with transaction(env.engine) as session:
        org = create_organisation(session, "Ours")[0].id
        account = create_account(session, org, code="cus_1", name="Ours Ltd")
        mapping = create_mapping(session, org, **_mapping(MappedEntity.ACCOUNT, account.id))
        # entities meterbridge does not store are the caller's names, as before
        create_mapping(session, org, **_mapping(MappedEntity.PRODUCT, "anything"))
    assert mapping.entity_id == account.id
