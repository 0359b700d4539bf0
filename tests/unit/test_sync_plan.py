from __future__ import annotations

from domain.destinations.chargebee.items import ChargeItem
from domain.integrations.sync import LineState, RemoteLine, plan_sync


def item(key: str, price: str, quantity: int) -> ChargeItem:
    return ChargeItem(
        key=key, item_price_id=price, date_from=0, date_to=1, quantity=quantity, unit_price=100
    )


def recorded(item_: ChargeItem, line_id: str) -> RemoteLine:
    return RemoteLine(
        org_id="o",
        config_id="c",
        bill_id="b",
        invoice_id="i",
        run_id="r",
        item_key=item_.key,
        item_price_id=item_.item_price_id,
        fingerprint=item_.fingerprint,
        state=LineState.ADDED,
        idempotency_key="k",
        line_item_id=line_id,
    )


def test_an_unchanged_bill_changes_nothing() -> None:
    desired = [item("1", "a", 1), item("2", "b", 2)]
    lines = [recorded(desired[0], "li_1"), recorded(desired[1], "li_2")]
    plan = plan_sync(desired, lines, {"li_1", "li_2"})
    assert (plan.add, plan.delete, plan.forget) == ([], [], [])


def test_a_regenerated_bill_replaces_only_what_changed() -> None:
    v1 = [item("1", "a", 1), item("2", "b", 2), item("3", "c", 3)]
    lines = [recorded(v1[0], "li_1"), recorded(v1[1], "li_2"), recorded(v1[2], "li_3")]
    v2 = [item("1", "a", 1), item("2", "b", 5)]
    plan = plan_sync(v2, lines, {"li_1", "li_2", "li_3"})
    assert [line.line_item_id for line in plan.delete] == ["li_2", "li_3"]
    assert plan.add == [v2[1]]
    assert [line.line_item_id for line in plan.keep] == ["li_1"]


def test_identical_items_are_counted_not_collapsed() -> None:
    same = item("1", "a", 1)
    twin = item("2", "a", 1)
    plan = plan_sync(
        [same, twin, item("3", "a", 1)],
        [recorded(same, "li_1"), recorded(twin, "li_2")],
        {"li_1", "li_2"},
    )
    assert len(plan.add) == 1
    assert plan.delete == []


def test_lines_removed_in_chargebee_are_forgotten_and_sent_again() -> None:
    desired = [item("1", "a", 1)]
    plan = plan_sync(desired, [recorded(desired[0], "li_gone")], {"li_other"})
    assert [line.line_item_id for line in plan.forget] == ["li_gone"]
    assert plan.add == desired
