"""A bill as Paddle one-time charges, following every option of the config. Pure.

Pieces and the price choice are shared (``domain.destinations.pieces``, ``.pricing``).
Paddle quantities are whole numbers and amounts are strings of minor units, so a piece
goes:

1. at its catalog price (``price_id``) when one applies and its quantity is whole (the
   performer sends it as a copy of that price, which can carry ``custom_data``: see
   ``workers.destinations.paddle.sync``);
2. else at a non-catalog price of its product (``default_product_id``): its unit price
   times its quantity when both are exact in minor units and whole, else quantity 1 at
   its subtotal with the usage quantity in the description, so the total is always the
   bill's.

Paddle cannot charge a negative amount: a credit line fails validation (exclude its type,
or credit it in Paddle as an adjustment).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from domain.destinations.paddle.options import PaddleConfig
from domain.destinations.pieces import BillToMap, Piece, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import minor_units, plain


@dataclass(frozen=True, slots=True)
class PaddleItem:
    key: str
    quantity: int
    item_price_id: str = ""
    #: A non-catalog price: unit amount in minor units, its product, its texts.
    unit_amount: str | None = None
    currency: str = ""
    product_id: str | None = None
    name: str = ""
    description: str = ""
    subtotal: Decimal = Decimal(0)
    aggregation_id: str | None = None

    def charge_item(self) -> dict[str, Any]:
        """The item as ``POST /subscriptions/{id}/charge`` takes it."""
        if self.item_price_id:
            return {"price_id": self.item_price_id, "quantity": self.quantity}
        return {
            "quantity": self.quantity,
            "price": {
                "description": self.description,
                "name": self.name,
                "unit_price": {"amount": self.unit_amount, "currency_code": self.currency},
                "product_id": self.product_id,
                "custom_data": {"meterbridge_item": self.key},
            },
        }

    def form(self) -> dict[str, str]:
        return {"item": json.dumps(self.charge_item(), sort_keys=True)}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.form()["item"].encode()).hexdigest()[:32]


def paddle_items(
    bill: BillToMap,
    entity: EntityConfig,
    paddle: PaddleConfig,
    product_prices: Mapping[str, str],
) -> list[PaddleItem]:
    """``product_prices``: product id → Paddle price id, from external mappings."""
    items = [
        _item(piece, bill.currency, paddle, price_for(piece, paddle, product_prices))
        for piece in pieces(bill, entity, paddle)
    ]
    return sort_items(items, paddle.sort_line_items_by)


def _item(piece: Piece, currency: str, config: PaddleConfig, price: str | None) -> PaddleItem:
    if piece.subtotal is not None and piece.subtotal < 0:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) is a credit of {plain(piece.subtotal)}: "
            "Paddle one-time charges cannot be negative; exclude the line type or credit it "
            "in Paddle as an adjustment"
        )
    whole = piece.quantity > 0 and piece.quantity == piece.quantity.to_integral_value()
    item = partial(
        PaddleItem,
        key=piece.key,
        subtotal=piece.subtotal or Decimal(0),
        aggregation_id=piece.aggregation_id,
    )
    if price is not None and whole:
        return item(quantity=int(piece.quantity), item_price_id=price)
    if config.default_product_id is None:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no Paddle catalog price for a whole "
            "quantity: set default_product_id to send it at a non-catalog price, or map its "
            "product to a Paddle price"
        )
    name = piece.description or str(piece.type).replace("_", " ").capitalize()
    unit = piece.effective_unit_price
    quantity, amount = _whole_units(piece, unit, currency)
    exact = Decimal(quantity) == piece.quantity and (
        unit is not None and amount == minor_units(unit, currency)
    )
    description = name if exact else f"{name}: {plain(piece.quantity)}"
    return item(
        quantity=quantity,
        unit_amount=str(amount),
        currency=currency.upper(),
        product_id=config.default_product_id,
        name=name[:150],
        description=description[:500],
    )


def _whole_units(piece: Piece, unit: Decimal | None, currency: str) -> tuple[int, int]:
    """(quantity, unit amount in minor units): the piece's own when exact, else 1 at its
    subtotal."""
    if piece.subtotal is not None:
        total = minor_units(piece.subtotal, currency)
    elif unit is not None:
        total = minor_units(unit * piece.quantity, currency)
    else:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no amount and no Paddle price"
        )
    whole = piece.quantity > 0 and piece.quantity == piece.quantity.to_integral_value()
    if whole and unit is not None and minor_units(unit, currency) * int(piece.quantity) == total:
        return int(piece.quantity), minor_units(unit, currency)
    return 1, total
