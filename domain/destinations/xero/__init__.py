"""Xero: an approved bill becomes one ``ACCREC`` invoice of its own, for the account's
contact (external mapping ``account`` → ``xero``/``contact``), its lines from
``items.xero_lines``. The performer is ``workers.destinations.xero``; connecting a
credential (OAuth 2.0) is ``workers.destinations.xero.connect``."""

from __future__ import annotations

from domain.destinations.spec import DestinationSpec
from domain.destinations.xero.items import xero_lines
from domain.destinations.xero.options import InvoiceStatus, XeroConfig, XeroCredential, XeroGrant

XERO = DestinationSpec(
    name="xero",
    title="Xero",
    options=XeroConfig,
    credential=XeroCredential,
    product_table="item",
    customer_table="contact",
    items=xero_lines,
    sends_before_approval=False,
    limits={"calls per tenant": "60/minute", "calls per tenant, daily": "5000/day"},
    concurrency={"per tenant": 5},
)

__all__ = ["XERO", "InvoiceStatus", "XeroConfig", "XeroCredential", "XeroGrant"]
