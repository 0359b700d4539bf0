"""A bill as Paddle one-time charges: whole quantities, amounts as strings of minor
units, and the total always the bill's."""

from __future__ import annotations

from datetime import date

import pytest

from domain.bills import LineItem
from domain.destinations.paddle import PaddleConfig
from domain.destinations.paddle.items import PaddleItem, paddle_items
from domain.destinations.pieces import BillToMap
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid


def items(
    *lines: LineItem, prices: dict[str, str] | None = None, **options: object
) -> list[PaddleItem]:
    bill = BillToMap("USD", date(2026, 11, 1), date(2026, 12, 1), list(lines))
    config = PaddleConfig.model_validate({"default_product_id": "pro_1", **options})
    return paddle_items(bill, EntityConfig(), config, prices or {})


def line(quantity: str, subtotal: str | None, **fields: object) -> LineItem:
    return LineItem.model_validate(
        {"type": "USAGE", "quantity": quantity, "subtotal": subtotal, **fields}
    )


def total(charged: list[PaddleItem]) -> int:
    return sum(int(item.unit_amount or 0) * item.quantity for item in charged)


def test_a_mapped_product_goes_at_its_catalog_price() -> None:
    (item,) = items(line("3", "30", product_id="p1"), prices={"p1": "pri_1"})
    assert item.charge_item() == {"price_id": "pri_1", "quantity": 3}


def test_an_exact_whole_line_goes_at_its_unit_price_and_quantity() -> None:
    (item,) = items(line("4", "10.00", unit_price="2.50", description="Seats"))
    price = item.charge_item()["price"]
    assert item.quantity == 4
    assert price["unit_price"] == {"amount": "250", "currency_code": "USD"}
    assert (price["product_id"], price["name"]) == ("pro_1", "Seats")


def test_a_fractional_line_goes_as_one_at_its_subtotal_with_the_quantity_described() -> None:
    (item,) = items(line("2.5", "7.51", unit_price="3", description="API calls"))
    assert (item.quantity, item.unit_amount) == (1, "751")
    assert item.description == "API calls: 2.5"


def test_the_charges_add_up_to_the_bill() -> None:
    lines = [line("3", "10.00", unit_price="3.33"), line("1000", "1.20", unit_price="0.0012")]
    assert total(items(*lines)) == 1000 + 120


def test_every_non_catalog_price_names_its_item_so_a_lost_charge_can_be_found() -> None:
    (item,) = items(line("1", "5"))
    assert item.charge_item()["price"]["custom_data"] == {"meterbridge_item": "1"}


def test_a_credit_fails_validation() -> None:
    credit = LineItem.model_validate({"type": "CREDIT_MEMO", "quantity": 1, "subtotal": "-5"})
    with pytest.raises(ConfigInvalid, match="cannot be negative"):
        items(credit)


def test_without_a_catalog_price_or_a_default_product_the_line_fails_validation() -> None:
    with pytest.raises(ConfigInvalid, match="default_product_id"):
        items(line("1", "5"), default_product_id=None)
