"""A bill as QuickBooks Online invoice lines, following every option of the config. Pure.

Each piece of the bill (``domain.destinations.pieces``) is one ``SalesItemLineDetail``
line: ``ItemRef`` from the price choice (``domain.destinations.pricing``: a "price id" is an
item's Id for QuickBooks), which QuickBooks requires on every such line, so a piece without
one is ``ConfigInvalid``; ``Qty`` and ``UnitPrice`` to 7 places (QuickBooks' most),
``Amount`` to the cent, ``ServiceDate`` the first day of the piece's service period.

QuickBooks refuses a line whose ``Amount`` is not ``Qty x UnitPrice`` rounded half up to
cents (fault 6070), and the invoice must total the bill's. So a line goes as it is only
when quantity and unit price fit in 7 places and their product rounds to the piece's
subtotal; otherwise it is quantity 1 at the subtotal, with the usage quantity in the
description (as for Xero: ``domain.destinations.pieces.line_price``), and the invoice total
is always the bill's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from domain.destinations.pieces import BillToMap, Piece, line_price, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.destinations.quickbooks.options import QuickBooksConfig
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import plain

#: QuickBooks keeps Qty and UnitPrice to 7 places, amounts to 2.
PLACES = 7
#: The longest line Description QuickBooks takes.
DESCRIPTION_MAX = 4000


@dataclass(frozen=True, slots=True)
class QuickBooksLine:
    key: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    #: The line's Amount, to the cent: the piece's subtotal.
    subtotal: Decimal
    item_id: str
    service_date: date
    tax_code_id: str | None = None
    aggregation_id: str | None = None

    @property
    def item_price_id(self) -> str:
        return self.item_id

    def line(self) -> dict[str, Any]:
        """The invoice's ``Line`` entry. Numbers go as strings, as python-quickbooks sends
        them (``use_decimal``), so no place is lost to a float."""
        detail: dict[str, Any] = {
            "ItemRef": {"value": self.item_id},
            "Qty": _number(self.quantity),
            "UnitPrice": _number(self.unit_price),
            "ServiceDate": self.service_date.isoformat(),
        }
        if self.tax_code_id is not None:
            detail["TaxCodeRef"] = {"value": self.tax_code_id}
        return {
            "DetailType": "SalesItemLineDetail",
            "Amount": plain(self.subtotal),
            "Description": self.description,
            "SalesItemLineDetail": detail,
        }

    def form(self) -> dict[str, str]:
        fields = {
            "Description": self.description,
            "ItemRef": self.item_id,
            "Qty": _number(self.quantity),
            "UnitPrice": _number(self.unit_price),
            "Amount": plain(self.subtotal),
            "ServiceDate": self.service_date.isoformat(),
            "TaxCodeRef": self.tax_code_id,
        }
        kept = {name: value for name, value in fields.items() if value is not None}
        return {**kept, "meterbridge_item": self.key}

    @property
    def fingerprint(self) -> str:
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def quickbooks_lines(
    bill: BillToMap,
    entity: EntityConfig,
    quickbooks: QuickBooksConfig,
    product_items: Mapping[str, str],
) -> list[QuickBooksLine]:
    """``product_items``: product id → QuickBooks item Id, from external mappings."""
    lines = [
        _line(piece, price_for(piece, quickbooks, product_items), quickbooks)
        for piece in pieces(bill, entity, quickbooks)
    ]
    return sort_items(lines, quickbooks.sort_line_items_by)


def _line(piece: Piece, item_id: str | None, quickbooks: QuickBooksConfig) -> QuickBooksLine:
    if item_id is None:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no QuickBooks item: map its product "
            "to a QuickBooks item (product → quickbooks/item), or set default_price_id, "
            "price_id_mapping, minimum_spend_item_price_id or standing_charge_item_price_id"
        )
    price = line_price(piece, PLACES)
    return QuickBooksLine(
        piece.key,
        price.description[:DESCRIPTION_MAX],
        price.quantity,
        price.unit_price,
        price.amount,
        item_id,
        piece.start,
        quickbooks.tax_code_id,
        piece.aggregation_id,
    )


def _number(value: Decimal) -> str:
    """At most 7 places, without trailing zeros: ``0.0125000`` → ``0.0125``."""
    return plain(value.normalize()) if value else "0"
