"""Every option of a Chargebee bill integration, one case at a time (pure mapping)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain.bills import LineItem, LineItemType, UsageBand
from domain.destinations.chargebee import ChargebeeConfig
from domain.destinations.chargebee.items import BillToMap, ChargeItem, charge_items
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid

T = LineItemType
START, END = date(2026, 10, 1), date(2026, 11, 1)
OCT_1, OCT_31_END = 1790812800, 1793491199  # 2026-10-01T00:00Z, 2026-10-31T23:59:59Z


def line(type: T = T.USAGE, **fields: object) -> LineItem:
    values: dict[str, object] = {"type": type, "quantity": 1, "subtotal": "10"} | fields
    return LineItem.model_validate(values)


def items(
    lines: list[LineItem],
    currency: str = "USD",
    prices: dict[str, str] | None = None,
    entity: dict | None = None,
    **chargebee: object,
) -> list[ChargeItem]:
    config = ChargebeeConfig.model_validate({"default_price_id": "default"} | chargebee)
    return charge_items(
        BillToMap(currency, START, END, lines),
        EntityConfig.model_validate(entity or {}),
        config,
        prices or {},
    )


def forms(result: list[ChargeItem]) -> list[dict[str, str]]:
    return [
        {k.removeprefix("item_price[").rstrip("]"): v for k, v in i.form().items()} for i in result
    ]


def test_a_whole_quantity_at_an_exact_unit_price_is_sent_as_is() -> None:
    [item] = items([line(quantity=3, unit_price="2.50", subtotal="7.50")])
    assert forms([item]) == [
        {
            "item_price_id": "default",
            "quantity": "3",
            "unit_price": "250",
            "date_from": str(OCT_1),
            "date_to": str(OCT_31_END),
        }
    ]


def test_fractional_quantities_without_multidecimal_go_as_one_at_the_subtotal() -> None:
    [item] = items([line(quantity="2.5", unit_price="0.333", subtotal="0.83")])
    assert (item.quantity, item.unit_price) == (1, 83)


def test_zero_decimal_currencies_use_whole_units() -> None:
    [item] = items([line(quantity=2, unit_price="150", subtotal="300")], currency="JPY")
    assert (item.quantity, item.unit_price) == (2, 150)


def test_multidecimal_rounds_half_up_to_the_configured_places() -> None:
    [a, b] = items(
        [
            line(quantity="0.13333", unit_price="0.16666", subtotal="0.02"),
            line(quantity="1.0005", unit_price="0.0004999", subtotal="0.01"),
        ],
        use_multidecimal=True,
        multidecimal_units_places=3,
        multidecimal_price_places=3,
    )
    assert (a.quantity_in_decimal, a.unit_price_in_decimal) == ("0.133", "0.167")
    assert (b.quantity_in_decimal, b.unit_price_in_decimal) == ("1.001", "0.000")
    assert a.quantity is None
    assert a.unit_price is None


def test_excluded_line_item_types_are_not_sent() -> None:
    result = items(
        [line(T.USAGE), line(T.CREDIT_MEMO, subtotal="-5"), line(T.STANDING_CHARGE)],
        entity={"excluded_line_item_types": ["CREDIT_MEMO"]},
    )
    assert [i.line_type for i in result] == ["USAGE", "STANDING_CHARGE"]


def test_empty_lines_are_not_sent() -> None:
    assert items([line(quantity=0, subtotal="0")]) == []


def test_price_resolution_order() -> None:
    lines = [
        line(T.MINIMUM_SPEND, product_id="p1"),
        line(T.STANDING_CHARGE, product_id="p1"),
        line(T.DEBIT_MEMO, product_id="p1"),
        line(T.USAGE, product_id="p1"),
        line(T.USAGE, product_id="p2"),
    ]
    result = items(
        lines,
        prices={"p1": "mapped-p1"},
        minimum_spend_item_price_id="min-spend",
        standing_charge_item_price_id="standing",
        price_id_mapping={"DEBIT_MEMO": "debits"},
    )
    assert [i.item_price_id for i in result] == [
        "min-spend",
        "standing",
        "debits",
        "mapped-p1",
        "default",
    ]


def test_the_type_mapping_wins_over_the_product_mapping() -> None:
    [item] = items(
        [line(T.USAGE, product_id="p1")],
        prices={"p1": "mapped"},
        price_id_mapping={"USAGE": "by-type"},
    )
    assert item.item_price_id == "by-type"


def test_a_line_without_any_price_fails_validation_naming_it() -> None:
    with pytest.raises(ConfigInvalid, match=r"line 2 \(USAGE, product p9\)"):
        charge_items(
            BillToMap("USD", START, END, [line(T.STANDING_CHARGE), line(T.USAGE, product_id="p9")]),
            EntityConfig(),
            ChargebeeConfig(standing_charge_item_price_id="standing"),
            {},
        )


def test_a_line_without_amounts_lets_chargebee_price_it() -> None:
    [item] = items([line(T.MINIMUM_SPEND, subtotal=None)], minimum_spend_item_price_id="min")
    assert (item.quantity, item.unit_price) == (1, None)
    assert "item_price[unit_price]" not in item.form()


BANDED = line(
    T.USAGE,
    product_id="api",
    aggregation_id="agg-calls",
    quantity=1500,
    subtotal="35",
    bands=[
        UsageBand(
            lower_limit=Decimal(0),
            upper_limit=Decimal(1000),
            quantity=Decimal(1000),
            unit_price=Decimal("0.02"),
            subtotal=Decimal(20),
        ),
        UsageBand(
            lower_limit=Decimal(1000),
            quantity=Decimal(500),
            unit_price=Decimal("0.03"),
            subtotal=Decimal(15),
        ),
    ],
)


def test_split_per_band_sends_one_item_per_band() -> None:
    result = items([BANDED], split_usage_line_items="per_band")
    assert [(i.key, i.quantity, i.unit_price) for i in result] == [
        ("1.1", 1000, 2),
        ("1.2", 500, 3),
    ]


def test_split_per_product_sums_a_products_usage_lines() -> None:
    second = line(T.USAGE, product_id="api", aggregation_id="agg-bytes", quantity=500, subtotal="5")
    other = line(T.USAGE, product_id="storage", quantity=10, unit_price="1", subtotal="10")
    result = items([BANDED, second, other], split_usage_line_items="per_product")
    assert [(i.key, i.quantity, i.unit_price) for i in result] == [
        ("product.api", 2000, 2),
        ("product.storage", 10, 100),
    ]
    assert sum(i.quantity * i.unit_price for i in result if i.quantity and i.unit_price) == 5000


def test_split_per_product_with_multidecimal_keeps_the_average_price() -> None:
    second = line(T.USAGE, product_id="api", quantity=500, subtotal="5")
    [item] = items(
        [BANDED, second],
        split_usage_line_items="per_product",
        use_multidecimal=True,
        multidecimal_price_places=5,
        multidecimal_units_places=2,
    )
    assert (item.quantity_in_decimal, item.unit_price_in_decimal) == ("2000.00", "0.02000")


@pytest.mark.parametrize(
    ("sort", "expected"),
    [("none", ["a", "b", "c"]), ("subtotal", ["b", "c", "a"]), ("aggregation_id", ["c", "a", "b"])],
)
def test_sort_line_items_by(sort: str, expected: list[str]) -> None:
    lines = [
        line(T.USAGE, product_id="a", aggregation_id="agg-2", subtotal="30"),
        line(T.USAGE, product_id="b", aggregation_id=None, subtotal="10"),
        line(T.USAGE, product_id="c", aggregation_id="agg-1", subtotal="20"),
    ]
    result = items(lines, prices={"a": "a", "b": "b", "c": "c"}, sort_line_items_by=sort)
    assert [i.item_price_id for i in result] == expected


def test_service_periods_become_dates_with_an_exclusive_end() -> None:
    [item] = items([line(service_period_start="2026-10-15", service_period_end="2026-10-16")])
    assert (item.date_from, item.date_to) == (1792022400, 1792022400 + 86399)


def test_fingerprints_tell_apart_what_differs_on_the_invoice() -> None:
    a, b, c = items(
        [
            line(quantity=2, unit_price="5", subtotal="10"),
            line(quantity=2, unit_price="5", subtotal="10"),
            line(quantity=3, unit_price="5", subtotal="15"),
        ]
    )
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.key != b.key
