"""A bill as a NetSuite invoice: its lines and its body fields, following every option of
the config. Pure.

Each piece of the bill (``domain.destinations.pieces``) is one line of the invoice's
``item`` sublist: ``item`` from the price choice (``domain.destinations.pricing``: a "price
id" is an item's internal id for NetSuite), ``quantity`` and ``rate`` to 8 places, and
``amount`` to the cent, always sent so the invoice total is the bill's whatever NetSuite
would compute. When quantity times rate would not round to the piece's subtotal, the line is
quantity 1 at the subtotal, with the usage quantity in the description (as for Xero:
``domain.destinations.pieces.line_price``). A piece with neither a unit price nor a
subtotal leaves its price to NetSuite: only the item and quantity are sent, and NetSuite
prices it at the item's own rate.

How many places NetSuite keeps of a rate or a quantity is not documented; 8 is a bound of
ours, and numbers go as JSON numbers (NetSuite's float fields), so a value that a double
cannot carry exactly goes the quantity-1 way too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from domain.destinations.netsuite.options import NetSuiteConfig
from domain.destinations.pieces import BillToMap, Piece, line_price, pieces, sort_items
from domain.destinations.pricing import price_for
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid, PerformFailed
from domain.money import plain, round_half_up

#: The places of a quantity and a rate sent: a bound of ours (see above).
PLACES = 8
#: NetSuite's limit of a line's description.
MAX_DESCRIPTION = 4000
#: What NetSuite allows in an external id.
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True, slots=True)
class NetSuiteLine:
    key: str
    item_id: str
    description: str
    quantity: Decimal
    #: None (with ``amount``): NetSuite prices the line at the item's own rate.
    rate: Decimal | None
    amount: Decimal | None
    aggregation_id: str | None = None

    @property
    def item_price_id(self) -> str:
        return self.item_id

    @property
    def subtotal(self) -> Decimal:
        """For sorting: the amount, 0 when NetSuite prices the line."""
        return self.amount if self.amount is not None else Decimal(0)

    def line_item(self) -> dict[str, Any]:
        """The ``item.items`` entry: references as ``{"id"}``, numbers as JSON numbers."""
        line: dict[str, Any] = {
            "item": {"id": self.item_id},
            "quantity": float(self.quantity),
            "description": self.description,
        }
        if self.rate is not None and self.amount is not None:
            line["rate"] = float(self.rate)
            line["amount"] = float(self.amount)
        return line

    def form(self) -> dict[str, str]:
        fields = {
            "item": self.item_id,
            "quantity": plain(self.quantity),
            "rate": plain(self.rate) if self.rate is not None else None,
            "amount": plain(self.amount) if self.amount is not None else None,
            "description": self.description,
            "meterbridge_item": self.key,
        }
        return {name: value for name, value in fields.items() if value is not None}

    @property
    def fingerprint(self) -> str:
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def netsuite_lines(
    bill: BillToMap,
    entity: EntityConfig,
    options: NetSuiteConfig,
    product_items: Mapping[str, str],
) -> list[NetSuiteLine]:
    """``product_items``: product id → NetSuite item internal id, from external mappings."""
    lines = [
        _line(piece, price_for(piece, options, product_items))
        for piece in pieces(bill, entity, options)
    ]
    return sort_items(lines, options.sort_line_items_by)


def _line(piece: Piece, item_id: str | None) -> NetSuiteLine:
    if item_id is None:
        raise ConfigInvalid(
            f"line {piece.line_number} ({piece.type}) has no NetSuite item: map its product to "
            "a NetSuite item (product → netsuite/item), or set default_price_id, "
            "price_id_mapping, minimum_spend_item_price_id or standing_charge_item_price_id"
        )
    if piece.unit_price is None and piece.subtotal is None:
        return NetSuiteLine(
            piece.key,
            item_id,
            piece.label[:MAX_DESCRIPTION],
            round_half_up(piece.quantity, PLACES),
            None,
            None,
            piece.aggregation_id,
        )
    price = line_price(piece, PLACES, _carried)
    return NetSuiteLine(
        piece.key,
        item_id,
        price.description[:MAX_DESCRIPTION],
        price.quantity,
        price.unit_price,
        price.amount,
        piece.aggregation_id,
    )


def _carried(value: Decimal) -> bool:
    """Whether a JSON number (a double) carries ``value`` exactly."""
    return Decimal(repr(float(value))) == value


@dataclass(frozen=True)
class InvoiceFor:
    """What a run knows of the bill and where it goes, for the invoice's body."""

    bill_id: str
    bill_version: int
    currency: str
    period_start: date
    period_end: date
    customer_id: str
    #: The account's mapped subsidiary, which wins over the config's ``subsidiary_id``.
    subsidiary_id: str | None = None


def external_id(bill_id: str) -> str:
    """The invoice's external id: the bill's id, which NetSuite keeps unique per record type,
    so that an upsert by it can never make a second invoice for the bill."""
    if not EXTERNAL_ID.fullmatch(bill_id):
        raise PerformFailed(
            f"bill id {bill_id!r} cannot be a NetSuite external id (letters, digits, _ and -)"
        )
    return bill_id


def netsuite_invoice(
    bill: InvoiceFor, options: NetSuiteConfig, lines: Sequence[NetSuiteLine]
) -> dict[str, Any]:
    """The complete invoice: body fields and every line. Sent as an upsert with
    ``replace=item``, it is the whole truth, so the invoice holds this version and no
    other. ``tranDate`` is the bill's period end, as for Xero's invoice date."""
    body: dict[str, Any] = {
        "externalId": external_id(bill.bill_id),
        "entity": {"id": bill.customer_id},
        "tranDate": bill.period_end.isoformat(),
        "dueDate": (bill.period_end + timedelta(days=options.due_days)).isoformat(),
        "memo": (
            f"meterbridge bill {bill.bill_id}, version {bill.bill_version}: "
            f"{bill.period_start.isoformat()} to {bill.period_end.isoformat()}"
        ),
        "item": {"items": [line.line_item() for line in lines]},
    }
    subsidiary = bill.subsidiary_id or options.subsidiary_id
    if subsidiary is not None:
        body["subsidiary"] = {"id": subsidiary}
    if options.currency_ids:
        currency = options.currency_ids.get(bill.currency.upper())
        if currency is None:
            known = ", ".join(sorted(options.currency_ids))
            raise ConfigInvalid(
                f"the bill is in {bill.currency.upper()}, which currency_ids does not map to "
                f"a NetSuite currency (it maps {known})"
            )
        body["currency"] = {"id": currency}
    return body
