"""NetSuite: a bill is one invoice (REST web services' ``invoice`` record) whose external id
is the bill's id, for the account's customer (external mapping ``account`` →
``netsuite``/``customer``), its lines from ``items.netsuite_lines``. It goes out on every
generation (unless ``only_send_on_approval``) and again on approval, each time as the complete
invoice upserted by its external id, so the invoice holds the bill's latest version and a
retry never makes a second one. The performer is ``workers.destinations.netsuite``; the two
ways to authenticate (OAuth 2.0 M2M, TBA) are ``workers.destinations.netsuite.connect``.

NetSuite documents no approval field that an invoice always has (invoice approval is a
workflow of a SuiteApp, when installed), so approval sends the same invoice again, with the
latest version, rather than changing a status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.destinations.netsuite.items import NetSuiteLine, netsuite_lines
from domain.destinations.netsuite.options import (
    JwtAlgorithm,
    NetSuiteAuth,
    NetSuiteConfig,
    NetSuiteCredential,
)
from domain.destinations.spec import BillOwner, DestinationSpec, Lookup
from domain.integrations.configs import EntityConfig
from domain.mappings import MappedEntity

#: The external mapping table of an account's subsidiary (``account`` → ``netsuite``/this).
SUBSIDIARY_TABLE = "subsidiary"


def account_subsidiary(
    spec: DestinationSpec, lookup: Lookup, owner: BillOwner, entity: EntityConfig, options: Any
) -> Mapping[str, str]:
    """The account's subsidiary, when it has an external mapping to one: in a OneWorld
    account each customer belongs to a subsidiary, and one config can serve customers of
    several. Without a mapping the config's ``subsidiary_id`` applies."""
    subsidiary = lookup(MappedEntity.ACCOUNT, owner.account.id, SUBSIDIARY_TABLE)
    return {SUBSIDIARY_TABLE: subsidiary} if subsidiary is not None else {}


NETSUITE = DestinationSpec(
    name="netsuite",
    title="NetSuite",
    options=NetSuiteConfig,
    credential=NetSuiteCredential,
    product_table="item",
    items=netsuite_lines,
    related=account_subsidiary,
    sends_before_approval=True,
    concurrency={"per account": 5},
)

__all__ = [
    "NETSUITE",
    "SUBSIDIARY_TABLE",
    "JwtAlgorithm",
    "NetSuiteAuth",
    "NetSuiteConfig",
    "NetSuiteCredential",
    "NetSuiteLine",
]
