"""QuickBooks Online: an approved bill becomes one invoice of its own in the connected
company (realm), for the account's customer (external mapping ``account`` →
``quickbooks``/``customer``), its lines from ``items.quickbooks_lines``. A new version
replaces that invoice's lines; there is never a second invoice for a bill. The performer is
``workers.destinations.quickbooks``; connecting a credential (OAuth 2.0, a person's
consent, which names the company) is ``workers.destinations.quickbooks.connect``."""

from __future__ import annotations

from domain.destinations.quickbooks.items import quickbooks_lines
from domain.destinations.quickbooks.options import (
    CALLS_PER_MINUTE,
    CONCURRENT_CALLS,
    QuickBooksConfig,
    QuickBooksCredential,
    QuickBooksEnvironment,
)
from domain.destinations.spec import DestinationSpec

QUICKBOOKS = DestinationSpec(
    name="quickbooks",
    title="QuickBooks Online",
    options=QuickBooksConfig,
    credential=QuickBooksCredential,
    product_table="item",
    customer_table="customer",
    items=quickbooks_lines,
    sends_before_approval=False,
    limits={"calls per company": f"{CALLS_PER_MINUTE}/minute"},
    concurrency={"per company": CONCURRENT_CALLS},
)

__all__ = ["QUICKBOOKS", "QuickBooksConfig", "QuickBooksCredential", "QuickBooksEnvironment"]
