"""A bill as Stripe invoice items: the pricing form each line takes, and the total always
the bill's."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from domain.bills import LineItem, LineItemType
from domain.destinations.pieces import BillToMap
from domain.destinations.stripe import StripeConfig
from domain.destinations.stripe.items import MAX_ITEMS_PER_INVOICE, StripeItem, stripe_items
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid

START, END = date(2026, 11, 1), date(2026, 12, 1)


def items(*lines: LineItem, currency: str = "USD", **options: object) -> list[StripeItem]:
    bill = BillToMap(currency, START, END, list(lines))
    return stripe_items(bill, EntityConfig(), StripeConfig.model_validate(options), {})


def usage(quantity: str, subtotal: str | None, **fields: object) -> LineItem:
    return LineItem.model_validate(
        {"type": "USAGE", "quantity": quantity, "subtotal": subtotal, **fields}
    )


def test_a_line_with_a_price_goes_by_the_price_and_its_whole_quantity() -> None:
    (item,) = items(usage("3", "30"), default_price_id="price_1")
    assert item.form()["pricing[price]"] == "price_1"
    assert (item.quantity, item.amount, item.unit_amount_decimal) == (3, None, None)


def test_a_fractional_unit_price_goes_as_unit_amount_decimal_in_minor_units() -> None:
    (item,) = items(usage("1000", "1.20", unit_price="0.0012"))
    assert item.form()["unit_amount_decimal"] == "0.12"
    assert item.form()["quantity"] == "1000"
    assert "amount" not in item.form()


def test_a_fractional_quantity_goes_as_its_subtotal_with_the_quantity_in_the_description() -> None:
    (item,) = items(usage("2.5", "7.51", unit_price="3", description="API calls"))
    assert (item.amount, item.quantity) == (751, None)
    assert item.description == "API calls (2.5)"


def test_a_subtotal_the_unit_price_cannot_reach_goes_by_amount() -> None:
    (item,) = items(usage("3", "10.00", unit_price="3.33"))
    assert (item.amount, item.unit_amount_decimal) == (1000, None)


def test_a_credit_is_a_negative_amount() -> None:
    line = LineItem.model_validate({"type": "CREDIT_MEMO", "quantity": 1, "subtotal": "-5"})
    (item,) = items(line)
    assert item.form()["amount"] == "-500"


def test_zero_decimal_currencies_are_not_scaled() -> None:
    (item,) = items(usage("4", "1000", unit_price="250"), currency="JPY")
    assert item.form()["unit_amount_decimal"] == "250"


def test_the_period_is_the_bill_s_with_the_end_exclusive() -> None:
    (item,) = items(usage("1", "1"))
    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    end = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert item.form()["period[start]"] == str(int(start))
    assert item.form()["period[end]"] == str(int(end) - 1)


def test_a_line_with_neither_price_nor_amount_fails_validation() -> None:
    with pytest.raises(ConfigInvalid, match="no amount and no Stripe price"):
        items(usage("3", None))


def test_a_bill_over_stripe_s_item_limit_fails_validation_naming_it() -> None:
    lines = [usage("1", "1") for _ in range(MAX_ITEMS_PER_INVOICE + 1)]
    with pytest.raises(ConfigInvalid, match="at most 250"):
        items(*lines)
    assert len(items(*lines, stripe_mode="subscription_invoicing")) == 251


def test_send_invoice_needs_days_until_due() -> None:
    with pytest.raises(ValueError, match="days_until_due"):
        StripeConfig.model_validate({"collection_method": "send_invoice"})


def test_the_shared_options_keep_their_names_and_behaviour() -> None:
    minimum = LineItem.model_validate({"type": LineItemType.MINIMUM_SPEND, "subtotal": "9"})
    (item,) = items(minimum, minimum_spend_item_price_id="price_min", default_price_id="p")
    assert item.item_price_id == "price_min"
    ordered = items(
        usage("1", "5"), usage("1", "2"), usage("1", "9"), sort_line_items_by="subtotal"
    )
    assert [item.subtotal for item in ordered] == [Decimal(2), Decimal(5), Decimal(9)]
