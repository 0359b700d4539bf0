"""Chargebee: bills as charges on the customer's pending invoice, or as invoices of their
own (``create_invoice``). The performer is ``workers.destinations.chargebee``."""

from domain.destinations.chargebee.items import charge_items
from domain.destinations.chargebee.options import ChargebeeConfig, ChargebeeCredential
from domain.destinations.spec import DestinationSpec

CHARGEBEE = DestinationSpec(
    name="chargebee",
    title="Chargebee",
    options=ChargebeeConfig,
    credential=ChargebeeCredential,
    product_table="item_price",
    items=charge_items,
)

__all__ = ["CHARGEBEE", "ChargebeeConfig", "ChargebeeCredential"]
