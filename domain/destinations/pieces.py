"""A bill cut into the pieces a destination sends: the options every destination shares.

1. ``excluded_line_item_types`` (entity config) drops lines; lines with no quantity and no
   subtotal are never sent.
2. ``split_usage_line_items``: ``per_band`` sends each pricing band of a usage line as its
   own piece; ``per_product`` merges the usage lines of one product into one piece.
3. A piece's service period is its line's, else the bill's.
4. ``sort_line_items_by``: bill order, subtotal (ascending), or aggregation id.

And, for the destinations that compute a line's amount themselves from its quantity and
unit price (Xero, QuickBooks, NetSuite), ``line_price``: the numbers a piece goes out at so
that the line's amount is the piece's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from domain.bills import LineItem, LineItemType
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import plain, round_half_up

USAGE_TYPES = frozenset({LineItemType.USAGE})


class SplitUsage(StrEnum):
    PER_BAND = "per_band"
    PER_PRODUCT = "per_product"


class SortBy(StrEnum):
    NONE = "none"
    SUBTOTAL = "subtotal"
    AGGREGATION_ID = "aggregation_id"


class LineOptions(BaseModel):
    """How a bill's lines become pieces; every destination's options include these."""

    model_config = ConfigDict(extra="forbid")

    split_usage_line_items: SplitUsage = SplitUsage.PER_BAND
    sort_line_items_by: SortBy = SortBy.NONE


@dataclass(frozen=True)
class BillToMap:
    currency: str
    period_start: date
    period_end: date
    lines: list[LineItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Piece:
    """One thing to send: a line, a band of a line, or a product's merged usage."""

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
    description: str = ""

    @property
    def effective_unit_price(self) -> Decimal | None:
        """The piece's unit price, else its subtotal spread over its quantity."""
        if self.unit_price is not None:
            return self.unit_price
        if self.subtotal is not None and self.quantity:
            return self.subtotal / self.quantity
        return None

    @property
    def label(self) -> str:
        """The piece's description, else its type in words: ``Standing charge``."""
        return self.description or str(self.type).replace("_", " ").capitalize()


def pieces(bill: BillToMap, entity: EntityConfig, options: LineOptions) -> list[Piece]:
    excluded = set(entity.excluded_line_item_types)
    lines = [
        (number, line)
        for number, line in enumerate(bill.lines, start=1)
        if line.type not in excluded and not _empty(line)
    ]
    return _split(bill, lines, options.split_usage_line_items)


def _empty(line: LineItem) -> bool:
    return line.quantity == 0 and not line.subtotal


def _split(bill: BillToMap, lines: list[tuple[int, LineItem]], split: SplitUsage) -> list[Piece]:
    out: list[Piece] = []
    products: dict[str, int] = {}
    for number, line in lines:
        start = line.service_period_start or bill.period_start
        end = line.service_period_end or bill.period_end
        usage = line.type in USAGE_TYPES
        whole = Piece(
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
            line.description or "",
        )
        if usage and split == SplitUsage.PER_BAND and line.bands:
            out += [
                Piece(
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
                    whole.description,
                )
                for index, band in enumerate(line.bands, start=1)
                if band.quantity or band.subtotal
            ]
        elif usage and split == SplitUsage.PER_PRODUCT and line.product_id:
            if line.product_id in products:
                out[products[line.product_id]] = _merge(out[products[line.product_id]], line)
            else:
                products[line.product_id] = len(out)
                out.append(
                    Piece(
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
                        whole.description,
                    )
                )
        else:
            out.append(whole)
    return out


def _merge(piece: Piece, line: LineItem) -> Piece:
    subtotal = (piece.subtotal or Decimal(0)) + (line.subtotal or Decimal(0))
    return Piece(
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
        piece.description,
    )


@dataclass(frozen=True, slots=True)
class LinePrice:
    """A piece's numbers on a line: ``amount`` is ``quantity`` x ``unit_price`` rounded half
    up to the cent."""

    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    description: str


def line_price(
    piece: Piece, places: int, carried: Callable[[Decimal], bool] = lambda _: True
) -> LinePrice:
    """How a piece goes out to a destination that keeps a line's quantity and unit price to
    ``places`` decimals and makes its amount quantity x unit price rounded half up to the
    cent, so that the line's amount is the piece's subtotal (to the cent).

    The piece goes at its quantity and unit price (its effective one, rounded half up to
    ``places``) when its quantity has at most ``places`` decimals, ``carried`` (the
    destination's own limit on a number, if any) holds for both, and their product to the
    cent is its subtotal to the cent, or it has no subtotal. Otherwise it goes as quantity 1
    at its amount, the quantity (unless 1) in the description: its subtotal, else its
    quantity x unit price. A piece with neither is ``ConfigInvalid``: a destination that can
    price a line itself decides so before asking this.
    """
    description = piece.label
    quantity = round_half_up(piece.quantity, places)
    unit = piece.effective_unit_price
    if unit is not None and quantity == piece.quantity:
        unit = round_half_up(unit, places)
        amount = round_half_up(quantity * unit, 2)
        exact = piece.subtotal is None or amount == round_half_up(piece.subtotal, 2)
        if exact and carried(quantity) and carried(unit):
            return LinePrice(quantity, unit, amount, description)
    if piece.subtotal is not None:
        total = round_half_up(piece.subtotal, 2)
    elif piece.unit_price is not None:
        total = round_half_up(piece.quantity * piece.unit_price, 2)
    else:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no amount and no unit price"
        )
    if piece.quantity != 1:
        description = f"{description} ({plain(piece.quantity)})"
    return LinePrice(Decimal(1), total, total, description)


class Sortable(Protocol):
    @property
    def subtotal(self) -> Decimal: ...

    @property
    def aggregation_id(self) -> str | None: ...


S = TypeVar("S", bound=Sortable)


def sort_items(items: Sequence[S], sort_by: SortBy) -> list[S]:
    if sort_by == SortBy.SUBTOTAL:
        return sorted(items, key=lambda item: item.subtotal)
    if sort_by == SortBy.AGGREGATION_ID:
        return sorted(
            items, key=lambda item: (item.aggregation_id is None, item.aggregation_id or "")
        )
    return list(items)


def day_start_unix(day: date) -> int:
    """Unix seconds at the start of ``day`` (UTC): service periods' end dates are
    exclusive, so a period ends the second before its end date's start."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
