"""``line_price``: a piece's quantity, unit price and amount on a line of a destination that
makes a line's amount quantity x unit price rounded half up to the cent (Xero at 4 places,
QuickBooks at 7, NetSuite at 8 and only numbers a double carries)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.bills import LineItemType
from domain.destinations.pieces import LinePrice, Piece, line_price
from domain.integrations.errors import ConfigInvalid

CENT = Decimal("0.01")


def piece(
    quantity: str,
    subtotal: str | None,
    unit_price: str | None = None,
    *,
    type: LineItemType = LineItemType.USAGE,
    description: str = "",
) -> Piece:
    return Piece(
        key="1",
        line_number=1,
        type=type,
        product_id=None,
        aggregation_id=None,
        quantity=Decimal(quantity),
        unit_price=None if unit_price is None else Decimal(unit_price),
        subtotal=None if subtotal is None else Decimal(subtotal),
        start=date(2026, 10, 1),
        end=date(2026, 11, 1),
        description=description,
    )


def as_sent(price: LinePrice) -> tuple[str, str, str, str]:
    """Quantity, unit price, amount (without trailing zeros) and description."""
    return _text(price.quantity), _text(price.unit_price), _text(price.amount), price.description


def _text(number: Decimal) -> str:
    return f"{number.normalize():f}"


def test_a_piece_whose_product_rounds_half_up_to_its_subtotal_goes_at_its_quantity() -> None:
    # 1234 x 0.0125 = 15.425: half up 15.43, the subtotal (half even would say 15.42)
    price = line_price(piece("1234", "15.43", "0.0125", description="API calls"), 4)

    assert as_sent(price) == ("1234", "0.0125", "15.43", "API calls")


def test_the_unit_price_is_rounded_half_up_to_the_destination_s_places() -> None:
    # 0.00012345 at 7 places is 0.0001235: x 100000 = 12.35, the subtotal
    assert as_sent(line_price(piece("100000", "12.35", "0.00012345"), 7)) == (
        "100000",
        "0.0001235",
        "12.35",
        "Usage",
    )
    # at 4 places it is 0.0001: x 100000 = 10.00, not the subtotal
    assert as_sent(line_price(piece("100000", "12.35", "0.00012345"), 4)) == (
        "1",
        "12.35",
        "12.35",
        "Usage (100000)",
    )


def test_without_a_unit_price_the_subtotal_is_spread_over_the_quantity() -> None:
    price = line_price(piece("3", "10.00", description="Seats"), 7)

    assert as_sent(price) == ("3", "3.3333333", "10", "Seats")


def test_a_product_that_misses_the_subtotal_goes_as_one_at_the_subtotal() -> None:
    price = line_price(piece("3", "10.00", "3.33"), 8)

    assert as_sent(price) == ("1", "10", "10", "Usage (3)")


def test_a_quantity_finer_than_the_places_goes_as_one_at_the_subtotal() -> None:
    price = line_price(piece("0.12345", "1.23", "10"), 4)

    assert as_sent(price) == ("1", "1.23", "1.23", "Usage (0.12345)")


def test_a_number_the_destination_cannot_carry_goes_as_one_at_the_subtotal() -> None:
    refused = piece("4", "10.00", "2.5")

    assert line_price(refused, 8).quantity == 4
    assert as_sent(line_price(refused, 8, lambda value: value != Decimal("2.5"))) == (
        "1",
        "10",
        "10",
        "Usage (4)",
    )


def test_a_piece_of_one_keeps_its_description_and_one_of_none_names_its_quantity() -> None:
    standing = piece("1", "49.00", "48.00", type=LineItemType.STANDING_CHARGE)
    nothing_used = piece("0", "5.00")

    assert as_sent(line_price(standing, 4)) == ("1", "49", "49", "Standing charge")
    assert as_sent(line_price(nothing_used, 4)) == ("1", "5", "5", "Usage (0)")


def test_without_a_subtotal_the_amount_is_quantity_times_unit_price() -> None:
    assert as_sent(line_price(piece("3", None, "3.33"), 4)) == ("3", "3.33", "9.99", "Usage")
    # a quantity finer than the places: one at quantity x unit price, to the cent
    assert as_sent(line_price(piece("0.12345", None, "10"), 4)) == (
        "1",
        "1.23",
        "1.23",
        "Usage (0.12345)",
    )


def test_a_piece_with_neither_subtotal_nor_unit_price_is_a_config_error() -> None:
    with pytest.raises(ConfigInvalid, match=r"line 1 \(USAGE\) has no amount and no unit price"):
        line_price(piece("2", None), 4)


def _double_carries(value: Decimal) -> bool:
    return Decimal(repr(float(value))) == value


@given(
    quantity=st.decimals(min_value=0, max_value=1_000_000, places=9),
    unit_price=st.none() | st.decimals(min_value=0, max_value=1000, places=10),
    subtotal=st.decimals(min_value=-1000, max_value=100_000, places=4),
    places=st.sampled_from([0, 2, 4, 7, 8]),
    carried=st.sampled_from([lambda _: True, _double_carries]),
)
def test_the_line_s_amount_is_always_the_piece_s_subtotal_to_the_cent(
    quantity: Decimal,
    unit_price: Decimal | None,
    subtotal: Decimal,
    places: int,
    carried: Callable[[Decimal], bool],
) -> None:
    given_piece = piece(
        str(quantity), str(subtotal), None if unit_price is None else str(unit_price)
    )

    price = line_price(given_piece, places, carried)

    assert price.amount == subtotal.quantize(CENT, ROUND_HALF_UP)
    assert (price.quantity * price.unit_price).quantize(CENT, ROUND_HALF_UP) == price.amount
    assert max(_places(price.quantity), _places(price.unit_price)) <= max(places, 2)
    assert carried(price.quantity) or price.quantity == 1


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
