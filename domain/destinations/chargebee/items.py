"""A bill as Chargebee charge items, following every option of the config.

Pure: the caller loads the bill, the config and the product → item price mappings; this
module decides what goes on the invoice. Rules, in order:

1. Lines whose type is in ``excluded_line_item_types`` are left out, and so are lines with
   neither quantity nor amount (1, 2 and 5 are ``domain.destinations.pieces``, shared).
2. USAGE lines are split ``per_band`` (one item per pricing band; a line without bands is
   one item) or ``per_product`` (one item per product, quantities and subtotals summed).
3. The item price of each item (``domain.destinations.pricing``, shared):
   ``minimum_spend_item_price_id`` for MINIMUM_SPEND and
   ``standing_charge_item_price_id`` for STANDING_CHARGE when set; else
   ``price_id_mapping[type]``; else the product's external mapping (system ``chargebee``,
   table ``item_price``); else ``default_price_id``; else the run fails validation.
4. Amounts. With ``use_multidecimal``: ``quantity_in_decimal`` and
   ``unit_price_in_decimal``, rounded half up to the configured places. Without it,
   Chargebee takes whole quantities and prices in minor units: a whole quantity whose unit
   price times quantity equals the subtotal to the cent is sent as is; anything else is
   sent as quantity 1 at the subtotal, so the invoice total is always the bill's. A line
   without a subtotal or unit price is sent without a price: Chargebee's own item price
   applies.
5. ``sort_line_items_by``: bill order, subtotal (ascending), or aggregation id.
6. ``date_from``/``date_to``: the line's service period, else the bill's; the end date is
   exclusive, so ``date_to`` is the last second before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from domain.destinations.chargebee.options import ChargebeeConfig
from domain.destinations.pieces import BillToMap, Piece, day_start_unix, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import minor_units, plain, round_half_up

__all__ = ["BillToMap", "ChargeItem", "charge_items"]


@dataclass(frozen=True, slots=True)
class ChargeItem:
    key: str
    item_price_id: str
    date_from: int
    date_to: int
    quantity: int | None = None
    quantity_in_decimal: str | None = None
    unit_price: int | None = None
    unit_price_in_decimal: str | None = None
    line_type: str = ""
    subtotal: Decimal = Decimal(0)
    aggregation_id: str | None = None

    def form(self, prefix: str = "item_price", index: int | None = None) -> dict[str, str]:
        """Chargebee's form fields: ``item_price[quantity]`` or ``item_prices[quantity][0]``."""
        suffix = "" if index is None else f"[{index}]"
        fields = {
            "item_price_id": self.item_price_id,
            "quantity": self.quantity,
            "quantity_in_decimal": self.quantity_in_decimal,
            "unit_price": self.unit_price,
            "unit_price_in_decimal": self.unit_price_in_decimal,
            "date_from": self.date_from,
            "date_to": self.date_to,
        }
        return {
            f"{prefix}[{name}]{suffix}": str(value)
            for name, value in fields.items()
            if value is not None
        }

    @property
    def fingerprint(self) -> str:
        """What the invoice line must look like; equal fingerprints are interchangeable."""
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def charge_items(
    bill: BillToMap,
    entity: EntityConfig,
    chargebee: ChargebeeConfig,
    product_prices: Mapping[str, str],
) -> list[ChargeItem]:
    """``product_prices``: product id → Chargebee item price id, from external mappings."""
    items = [
        _item(piece, bill.currency, chargebee, _price(piece, chargebee, product_prices))
        for piece in pieces(bill, entity, chargebee)
    ]
    return sort_items(items, chargebee.sort_line_items_by)


def _price(piece: Piece, config: ChargebeeConfig, product_prices: Mapping[str, str]) -> str:
    price = price_for(piece, config, product_prices)
    if price is not None:
        return price
    product = f", product {piece.product_id}" if piece.product_id else ""
    raise ConfigInvalid(
        f"line {piece.line_number} ({piece.type}{product}) has no Chargebee item price: "
        f"map the product to an item_price, set price_id_mapping for {piece.type}, or set "
        "default_price_id"
    )


def _item(piece: Piece, currency: str, config: ChargebeeConfig, item_price_id: str) -> ChargeItem:
    item = partial(
        ChargeItem,
        key=piece.key,
        item_price_id=item_price_id,
        date_from=day_start_unix(piece.start),
        date_to=day_start_unix(piece.end) - 1,
        line_type=str(piece.type),
        subtotal=piece.subtotal or Decimal(0),
        aggregation_id=piece.aggregation_id,
    )
    unit_price = piece.effective_unit_price
    if config.use_multidecimal:
        return item(
            quantity_in_decimal=plain(
                round_half_up(piece.quantity, config.multidecimal_units_places)
            ),
            unit_price_in_decimal=(
                None
                if unit_price is None
                else plain(round_half_up(unit_price, config.multidecimal_price_places))
            ),
        )
    if piece.subtotal is None:
        whole = piece.quantity == piece.quantity.to_integral_value() and piece.quantity > 0
        price = None if unit_price is None else minor_units(unit_price, currency)
        return item(quantity=int(piece.quantity) if whole else 1, unit_price=price)
    total = minor_units(piece.subtotal, currency)
    if _exact_in_whole_units(piece.quantity, unit_price, total, currency):
        assert unit_price is not None
        return item(quantity=int(piece.quantity), unit_price=minor_units(unit_price, currency))
    return item(quantity=1, unit_price=total)


def _exact_in_whole_units(
    quantity: Decimal, unit_price: Decimal | None, total: int, currency: str
) -> bool:
    if unit_price is None or quantity <= 0 or quantity != quantity.to_integral_value():
        return False
    return minor_units(unit_price, currency) * int(quantity) == total
