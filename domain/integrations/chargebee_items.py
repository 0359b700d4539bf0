"""A bill as Chargebee charge items, following every option of the config.

Pure: the caller loads the bill, the config and the product → item price mappings; this
module decides what goes on the invoice. Rules, in order:

1. Lines whose type is in ``excluded_line_item_types`` are left out, and so are lines with
   neither quantity nor amount.
2. USAGE lines are split ``per_band`` (one item per pricing band; a line without bands is
   one item) or ``per_product`` (one item per product, quantities and subtotals summed).
3. The item price of each item: ``minimum_spend_item_price_id`` for MINIMUM_SPEND and
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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial

from domain.bills import LineItem, LineItemType
from domain.integrations.configs import ChargebeeConfig, EntityConfig, SortBy, SplitUsage
from domain.integrations.errors import ConfigInvalid
from domain.money import minor_units, plain, round_half_up

USAGE_TYPES = frozenset({LineItemType.USAGE})


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


@dataclass(frozen=True, slots=True)
class _Piece:
    key: str
    line_number: int
    type: LineItemType
    product_id: str | None
    aggregation_id: str | None
    quantity: Decimal
    unit_price: Decimal | None
    subtotal: Decimal | None
    start: date
    end: date


@dataclass(frozen=True)
class BillToMap:
    currency: str
    period_start: date
    period_end: date
    lines: list[LineItem] = field(default_factory=list)


def charge_items(
    bill: BillToMap,
    entity: EntityConfig,
    chargebee: ChargebeeConfig,
    product_prices: Mapping[str, str],
) -> list[ChargeItem]:
    """``product_prices``: product id → Chargebee item price id, from external mappings."""
    excluded = set(entity.excluded_line_item_types)
    lines = [
        (number, line)
        for number, line in enumerate(bill.lines, start=1)
        if line.type not in excluded and not _empty(line)
    ]
    pieces = _split(bill, lines, chargebee.split_usage_line_items)
    items = [
        _item(piece, bill.currency, chargebee, _price_for(piece, chargebee, product_prices))
        for piece in pieces
    ]
    return _sorted(items, chargebee.sort_line_items_by)


def _empty(line: LineItem) -> bool:
    return line.quantity == 0 and not line.subtotal


def _split(bill: BillToMap, lines: list[tuple[int, LineItem]], split: SplitUsage) -> list[_Piece]:
    pieces: list[_Piece] = []
    products: dict[str, int] = {}
    for number, line in lines:
        start = line.service_period_start or bill.period_start
        end = line.service_period_end or bill.period_end
        usage = line.type in USAGE_TYPES
        if usage and split == SplitUsage.PER_BAND and line.bands:
            pieces += [
                _Piece(
                    f"{number}.{index}",
                    number,
                    line.type,
                    line.product_id,
                    line.aggregation_id,
                    band.quantity,
                    band.unit_price,
                    band.subtotal,
                    start,
                    end,
                )
                for index, band in enumerate(line.bands, start=1)
                if band.quantity or band.subtotal
            ]
        elif usage and split == SplitUsage.PER_PRODUCT and line.product_id:
            if line.product_id in products:
                pieces[products[line.product_id]] = _merge(pieces[products[line.product_id]], line)
            else:
                products[line.product_id] = len(pieces)
                pieces.append(
                    _Piece(
                        f"product.{line.product_id}",
                        number,
                        line.type,
                        line.product_id,
                        line.aggregation_id,
                        line.quantity,
                        None,
                        line.subtotal,
                        start,
                        end,
                    )
                )
        else:
            pieces.append(
                _Piece(
                    str(number),
                    number,
                    line.type,
                    line.product_id,
                    line.aggregation_id,
                    line.quantity,
                    line.unit_price,
                    line.subtotal,
                    start,
                    end,
                )
            )
    return pieces


def _merge(piece: _Piece, line: LineItem) -> _Piece:
    subtotal = (piece.subtotal or Decimal(0)) + (line.subtotal or Decimal(0))
    return _Piece(
        piece.key,
        piece.line_number,
        piece.type,
        piece.product_id,
        piece.aggregation_id,
        piece.quantity + line.quantity,
        None,
        subtotal,
        min(piece.start, line.service_period_start or piece.start),
        max(piece.end, line.service_period_end or piece.end),
    )


def _price_for(piece: _Piece, config: ChargebeeConfig, product_prices: Mapping[str, str]) -> str:
    if piece.type == LineItemType.MINIMUM_SPEND and config.minimum_spend_item_price_id:
        return config.minimum_spend_item_price_id
    if piece.type == LineItemType.STANDING_CHARGE and config.standing_charge_item_price_id:
        return config.standing_charge_item_price_id
    if piece.type in config.price_id_mapping:
        return config.price_id_mapping[piece.type]
    if piece.product_id and piece.product_id in product_prices:
        return product_prices[piece.product_id]
    if config.default_price_id:
        return config.default_price_id
    product = f", product {piece.product_id}" if piece.product_id else ""
    raise ConfigInvalid(
        f"line {piece.line_number} ({piece.type}{product}) has no Chargebee item price: "
        f"map the product to an item_price, set price_id_mapping for {piece.type}, or set "
        "default_price_id"
    )


def _item(piece: _Piece, currency: str, config: ChargebeeConfig, item_price_id: str) -> ChargeItem:
    item = partial(
        ChargeItem,
        key=piece.key,
        item_price_id=item_price_id,
        date_from=_timestamp(piece.start),
        date_to=_timestamp(piece.end) - 1,
        line_type=str(piece.type),
        subtotal=piece.subtotal or Decimal(0),
        aggregation_id=piece.aggregation_id,
    )
    unit_price = piece.unit_price
    if unit_price is None and piece.subtotal is not None and piece.quantity:
        unit_price = piece.subtotal / piece.quantity
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


def _timestamp(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _sorted(items: list[ChargeItem], sort_by: SortBy) -> list[ChargeItem]:
    if sort_by == SortBy.SUBTOTAL:
        return sorted(items, key=lambda item: item.subtotal)
    if sort_by == SortBy.AGGREGATION_ID:
        return sorted(
            items, key=lambda item: (item.aggregation_id is None, item.aggregation_id or "")
        )
    return items
