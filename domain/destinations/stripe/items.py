"""A bill as Stripe invoice items, following every option of the config. Pure.

Pieces and the price choice are shared (``domain.destinations.pieces``, ``.pricing``).
Each piece is priced, in order:

1. by ``pricing[price]`` + ``quantity`` when a price applies and the quantity is a whole
   number (Stripe's price sets the amount: map a product to a Stripe price only when that
   price is the bill's);
2. else by ``unit_amount_decimal`` (minor units, up to 12 places) + ``quantity`` when the
   quantity is whole and Stripe's rounding of unit amount times quantity gives the subtotal
   to the minor unit;
3. else by ``amount``: the subtotal in minor units (a credit is negative), with the usage
   quantity in the description, so the invoice total is always the bill's.

A piece with neither a price nor an amount cannot be sent to Stripe: the run fails
validation. An invoice holds at most 250 items (Stripe's limit); a bill needing more
fails validation naming the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import partial

from domain.destinations.pieces import BillToMap, Piece, day_start_unix, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.destinations.stripe.options import StripeConfig, StripeMode
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import minor_units, plain

#: Stripe's limit of invoice items on one invoice.
MAX_ITEMS_PER_INVOICE = 250
_DECIMAL_PLACES = Decimal(10) ** -12


@dataclass(frozen=True, slots=True)
class StripeItem:
    key: str
    currency: str
    description: str
    period_start: int
    period_end: int
    item_price_id: str = ""
    quantity: int | None = None
    unit_amount_decimal: str | None = None
    amount: int | None = None
    subtotal: Decimal = Decimal(0)
    aggregation_id: str | None = None

    def form(self) -> dict[str, str]:
        """The invoice item's fields, without its customer, invoice or subscription."""
        fields = {
            "currency": self.currency.lower(),
            "description": self.description,
            "period[start]": self.period_start,
            "period[end]": self.period_end,
            "pricing[price]": self.item_price_id or None,
            "quantity": self.quantity,
            "unit_amount_decimal": self.unit_amount_decimal,
            "amount": self.amount,
            "metadata[meterbridge_item]": self.key,
        }
        return {name: str(value) for name, value in fields.items() if value is not None}

    @property
    def fingerprint(self) -> str:
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def stripe_items(
    bill: BillToMap,
    entity: EntityConfig,
    stripe: StripeConfig,
    product_prices: Mapping[str, str],
) -> list[StripeItem]:
    """``product_prices``: product id → Stripe price id, from external mappings."""
    items = [
        _item(piece, bill.currency, price_for(piece, stripe, product_prices))
        for piece in pieces(bill, entity, stripe)
    ]
    if stripe.stripe_mode == StripeMode.INVOICING and len(items) > MAX_ITEMS_PER_INVOICE:
        raise ConfigInvalid(
            f"the bill needs {len(items)} invoice items; a Stripe invoice holds at most "
            f"{MAX_ITEMS_PER_INVOICE} (Stripe's limit): split usage per_product or exclude "
            "line item types"
        )
    return sort_items(items, stripe.sort_line_items_by)


def _item(piece: Piece, currency: str, price: str | None) -> StripeItem:
    item = partial(
        StripeItem,
        key=piece.key,
        currency=currency,
        description=_description(piece),
        period_start=day_start_unix(piece.start),
        period_end=day_start_unix(piece.end) - 1,
        subtotal=piece.subtotal or Decimal(0),
        aggregation_id=piece.aggregation_id,
    )
    whole = piece.quantity > 0 and piece.quantity == piece.quantity.to_integral_value()
    if price is not None and whole:
        return item(item_price_id=price, quantity=int(piece.quantity))
    unit = piece.effective_unit_price
    if whole and unit is not None and unit >= 0:
        unit_minor = _minor_decimal(unit, currency)
        total = (unit_minor * piece.quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        if piece.subtotal is None or total == minor_units(piece.subtotal, currency):
            return item(unit_amount_decimal=plain(unit_minor), quantity=int(piece.quantity))
    if piece.subtotal is None:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no amount and no Stripe price: "
            "give it a subtotal, or map its product to a Stripe price, set price_id_mapping "
            f"for {piece.type}, or set default_price_id"
        )
    return item(amount=minor_units(piece.subtotal, currency))


def _minor_decimal(amount: Decimal, currency: str) -> Decimal:
    """``amount`` in minor units, to Stripe's 12 decimal places."""
    scale = Decimal(minor_units(Decimal(1), currency))
    return (amount * scale).quantize(_DECIMAL_PLACES, rounding=ROUND_HALF_UP).normalize()


def _description(piece: Piece) -> str:
    text = piece.description or str(piece.type).replace("_", " ").capitalize()
    if piece.quantity != piece.quantity.to_integral_value() or piece.quantity > 1:
        text = f"{text} ({plain(piece.quantity)})"
    return text[:500]
