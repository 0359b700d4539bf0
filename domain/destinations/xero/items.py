"""A bill as Xero invoice lines, following every option of the config. Pure.

Each piece of the bill (``domain.destinations.pieces``) is one line: ``ItemCode`` from the
price choice (``domain.destinations.pricing``: a "price id" is an item code for Xero),
``AccountCode`` from ``account_code_mapping`` or ``default_account_code``, ``Quantity`` and
``UnitAmount`` to 4 places (sent with ``unitdp=4``). Xero computes a line's amount as
quantity times unit amount rounded to 2 places; when that would not be the piece's subtotal,
the line is quantity 1 at the subtotal, with the usage quantity in the description, so the
invoice total is always the bill's (``domain.destinations.pieces.line_price``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.destinations.pieces import BillToMap, Piece, line_price, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.destinations.xero.options import XeroConfig
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid
from domain.money import plain

#: Xero keeps Quantity and UnitAmount to 4 places (with ``unitdp=4``).
PLACES = 4


@dataclass(frozen=True, slots=True)
class XeroLine:
    key: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    item_code: str | None
    account_code: str | None
    tax_type: str | None
    subtotal: Decimal
    aggregation_id: str | None = None

    @property
    def item_price_id(self) -> str:
        return self.item_code or ""

    def line_item(self) -> dict[str, str]:
        """The ``LineItems`` entry, numbers as strings as Xero's JSON accepts them."""
        fields = {
            "Description": self.description,
            "Quantity": plain(self.quantity),
            "UnitAmount": plain(self.unit_amount),
            "ItemCode": self.item_code,
            "AccountCode": self.account_code,
            "TaxType": self.tax_type,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def form(self) -> dict[str, str]:
        return {**self.line_item(), "meterbridge_item": self.key}

    @property
    def fingerprint(self) -> str:
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def xero_lines(
    bill: BillToMap, entity: EntityConfig, xero: XeroConfig, product_items: Mapping[str, str]
) -> list[XeroLine]:
    """``product_items``: product id → Xero item code, from external mappings."""
    lines = [
        _line(piece, price_for(piece, xero, product_items), xero)
        for piece in pieces(bill, entity, xero)
    ]
    return sort_items(lines, xero.sort_line_items_by)


def _line(piece: Piece, item_code: str | None, xero: XeroConfig) -> XeroLine:
    account = xero.account_code_mapping.get(piece.type, xero.default_account_code)
    if item_code is None and account is None:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no Xero item and no account code: "
            "map its product to a Xero item, or set default_price_id, price_id_mapping, "
            "account_code_mapping or default_account_code"
        )
    price = line_price(piece, PLACES)
    return XeroLine(
        piece.key,
        price.description[:4000],
        price.quantity,
        price.unit_price,
        item_code,
        account,
        xero.tax_type,
        price.amount,
        piece.aggregation_id,
    )
