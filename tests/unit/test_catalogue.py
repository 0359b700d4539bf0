"""The catalogue's entries: the issue's events, and schemas a calculation can use."""

from __future__ import annotations

import pytest

from domain.catalogue import CATALOGUE, EventType, event_types
from domain.expressions import check, evaluate, root_fields

NAMED_BY_THE_ISSUE = {
    "bill.generated",
    "bill.approved",
    "integration.run.completed",
    "integration.authentication.error",
    "integration.perform.error",
    "integration.validation.error",
    "integration.missingaccountmapping.error",
    "integration.disabled.error",
    "source.disabled",
    "account.created",
    "account_plan.created",
    "account_plan.updated",
    "account_plan.ended",
    "event.dead",
}


def test_the_catalogue_holds_the_events_the_issue_names() -> None:
    assert set(CATALOGUE) >= NAMED_BY_THE_ISSUE
    assert [event_type.name for event_type in event_types()] == sorted(CATALOGUE)


@pytest.mark.parametrize("event_type", event_types(), ids=lambda event_type: event_type.name)
def test_every_field_can_be_used_in_a_calculation(event_type: EventType) -> None:
    schema = event_type.schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert root_fields(schema) == set(schema["properties"]) != set()
    for field in schema["properties"]:
        assert evaluate(check(f"{field} = null", schema), {}) is True


@pytest.mark.parametrize("field", ["total"])
def test_money_is_decimal_text(field: str) -> None:
    for name in ("bill.generated", "bill.approved"):
        money, null = CATALOGUE[name].schema["properties"][field]["anyOf"]
        assert (money["type"], money["format"]) == ("string", "decimal")
        assert null == {"type": "null"}
    assert (
        CATALOGUE["bill.approved"]
        .validate(
            {
                "bill_id": "bill_1",
                "account_id": "acc_1",
                "version": 1,
                "currency": "USD",
                "period_start": "2026-10-01",
                "period_end": "2026-11-01",
                "total": "5000.25",
            }
        )
        .model_dump(mode="json")["total"]
        == "5000.25"
    )
