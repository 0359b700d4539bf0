"""Which remote price (Chargebee item price, Stripe price, Paddle price) a piece goes out
at: the same rule, with the same option names, for every destination.

1. A minimum spend or standing charge line: ``minimum_spend_item_price_id`` /
   ``standing_charge_item_price_id`` when set.
2. ``price_id_mapping[line type]``.
3. The product's external mapping (``product`` → the destination's price table).
4. ``default_price_id``.

None: no price applies. Chargebee then refuses the line; Stripe and Paddle send it
priced by amount instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from domain.bills import LineItemType
from domain.destinations.pieces import Piece


class PriceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minimum_spend_item_price_id: str | None = Field(None, max_length=100)
    standing_charge_item_price_id: str | None = Field(None, max_length=100)
    default_price_id: str | None = Field(None, max_length=100)
    price_id_mapping: dict[LineItemType, str] = Field(default_factory=dict)


def price_for(piece: Piece, options: PriceOptions, product_prices: Mapping[str, str]) -> str | None:
    """``product_prices``: product id → remote price id, from external mappings."""
    if piece.type == LineItemType.MINIMUM_SPEND and options.minimum_spend_item_price_id:
        return options.minimum_spend_item_price_id
    if piece.type == LineItemType.STANDING_CHARGE and options.standing_charge_item_price_id:
        return options.standing_charge_item_price_id
    if piece.type in options.price_id_mapping:
        return options.price_id_mapping[piece.type]
    if piece.product_id and piece.product_id in product_prices:
        return product_prices[piece.product_id]
    return options.default_price_id
