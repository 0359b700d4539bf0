"""A bill as QuickBooks Online invoice lines: an item on every line, Qty and UnitPrice to 7
places, Amount to the cent and always Qty x UnitPrice rounded half up (QuickBooks refuses
anything else, fault 6070), and the invoice's total always the bill's."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.bills import LineItem
from domain.destinations.pieces import BillToMap
from domain.destinations.quickbooks import QuickBooksConfig
from domain.destinations.quickbooks.items import QuickBooksLine, quickbooks_lines
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid

CENT = Decimal("0.01")


def lines(
    *items: LineItem, products: dict[str, str] | None = None, **options: object
) -> list[QuickBooksLine]:
    bill = BillToMap("USD", date(2026, 10, 1), date(2026, 11, 1), list(items))
    config = QuickBooksConfig.model_validate({"default_price_id": "1", **options})
    return quickbooks_lines(bill, EntityConfig(), config, products or {})


def usage(quantity: str, subtotal: str | None, **fields: object) -> LineItem:
    return LineItem.model_validate(
        {"type": "USAGE", "quantity": quantity, "subtotal": subtotal, **fields}
    )


def sent(line: QuickBooksLine) -> tuple[str, str, str, str]:
    """What QuickBooks receives: Qty, UnitPrice, Amount, Description."""
    body = line.line()
    detail = body["SalesItemLineDetail"]
    return detail["Qty"], detail["UnitPrice"], body["Amount"], body["Description"]


def test_an_exact_line_goes_at_its_quantity_and_unit_price_with_its_mapped_item() -> None:
    (line,) = lines(
        usage("1234", "15.43", unit_price="0.0125", product_id="api"),
        products={"api": "17"},
        tax_code_id="TAX",
    )
    assert line.line() == {
        "DetailType": "SalesItemLineDetail",
        "Amount": "15.43",
        "Description": "Usage",
        "SalesItemLineDetail": {
            "ItemRef": {"value": "17"},
            "Qty": "1234",
            "UnitPrice": "0.0125",
            "ServiceDate": "2026-10-01",
            "TaxCodeRef": {"value": "TAX"},
        },
    }


def test_unit_prices_keep_seven_places_rounded_half_up() -> None:
    # 0.00012345 goes as 0.0001235 (7 places, half up): x 100000 = 12.35, the subtotal
    (line,) = lines(usage("100000", "12.35", unit_price="0.00012345"))
    assert sent(line) == ("100000", "0.0001235", "12.35", "Usage")
    # a unit price spread from the subtotal: 10 / 3 → 3.3333333, x 3 rounds to 10.00
    (spread,) = lines(usage("3", "10.00", description="Seats"))
    assert sent(spread) == ("3", "3.3333333", "10.00", "Seats")


def test_a_line_whose_product_does_not_round_to_its_subtotal_goes_as_one_at_the_subtotal() -> None:
    # 3 x 3.33 = 9.99, but the bill says 10.00: QuickBooks would refuse 10.00 at 3 x 3.33
    (line,) = lines(usage("3", "10.00", unit_price="3.33", description="API calls"))
    assert sent(line) == ("1", "10", "10.00", "API calls (3)")


def test_a_quantity_with_more_than_seven_places_goes_as_one_at_the_subtotal() -> None:
    (line,) = lines(usage("0.123456789", "1.23", unit_price="10"))
    assert sent(line) == ("1", "1.23", "1.23", "Usage (0.123456789)")


def test_the_item_follows_the_shared_price_choice() -> None:
    standing = LineItem.model_validate(
        {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49", "subtotal": "49"}
    )
    mapped, by_type, fallback = lines(
        usage("1", "1", product_id="api"),
        standing,
        usage("2", "2", product_id="other"),
        products={"api": "21"},
        standing_charge_item_price_id="22",
    )
    assert [mapped.item_id, by_type.item_id, fallback.item_id] == ["21", "22", "1"]


def test_a_line_without_an_item_is_a_config_error_naming_it() -> None:
    bill = BillToMap("USD", date(2026, 10, 1), date(2026, 11, 1), [usage("1", "5")])
    with pytest.raises(ConfigInvalid, match=r"line 1 \(USAGE\) has no QuickBooks item"):
        quickbooks_lines(bill, EntityConfig(), QuickBooksConfig(), {})


def test_a_changed_amount_changes_the_fingerprint_and_an_equal_line_keeps_it() -> None:
    (first,) = lines(usage("2", "4", unit_price="2"))
    (same,) = lines(usage("2", "4", unit_price="2"))
    (changed,) = lines(usage("3", "6", unit_price="2"))
    assert first.fingerprint == same.fingerprint != changed.fingerprint


amounts = st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=4)
quantities = st.decimals(min_value=Decimal(0), max_value=Decimal("1000000"), places=9)
unit_prices = st.decimals(min_value=Decimal(0), max_value=Decimal("1000"), places=10)


@given(st.lists(st.tuples(quantities, unit_prices | st.none(), amounts), min_size=1, max_size=8))
def test_every_line_is_one_quickbooks_accepts_and_the_total_is_the_bill_s(
    given_lines: list[tuple[Decimal, Decimal | None, Decimal]],
) -> None:
    items = [
        usage(str(quantity), str(amount), unit_price=None if unit is None else str(unit))
        for quantity, unit, amount in given_lines
    ]
    made = lines(*items)
    for line in made:
        qty, price, amount, _ = sent(line)
        assert max(_places(qty), _places(price)) <= 7
        assert _places(amount) == 2
        assert (Decimal(qty) * Decimal(price)).quantize(CENT, ROUND_HALF_UP) == Decimal(amount)
    # each line's amount is its subtotal to the cent, half up, as the bill shows it
    assert sum(Decimal(sent(line)[2]) for line in made) == sum(
        (
            amount.quantize(CENT, ROUND_HALF_UP)
            for quantity, _, amount in given_lines
            if quantity or amount
        ),
        Decimal(0),
    )


def _places(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
