"""Each destination's performer, found by the name its ``domain.destinations`` spec has.

A performer makes the remote side hold exactly the run's items: it is called with the
prepared run (``domain.integrations.runs.prepare``) and the bill's sync state, holding the
bill's turn (``acquire_bill``), and answers what it did. It records every remote line in
the shared ledger (``domain.integrations.ledger``) before and after each write, and raises
``domain.errors.TransientError`` (retry) or an ``IntegrationError`` (the run ends in its
event) when it cannot.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Engine

from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync
from domain.settings import Settings
from workers.destinations.chargebee import sync as chargebee
from workers.destinations.netsuite import sync as netsuite
from workers.destinations.paddle import sync as paddle
from workers.destinations.quickbooks import sync as quickbooks
from workers.destinations.stripe import sync as stripe
from workers.destinations.xero import sync as xero


class Performer(Protocol):
    def __call__(
        self, engine: Engine, settings: Settings, prepared: Prepared, state: BillSync
    ) -> RunResult: ...


PERFORMERS: dict[str, Performer] = {
    "chargebee": chargebee.perform,
    "netsuite": netsuite.perform,
    "paddle": paddle.perform,
    "quickbooks": quickbooks.perform,
    "stripe": stripe.perform,
    "xero": xero.perform,
}
