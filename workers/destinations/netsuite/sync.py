"""NetSuite's performer: a bill has one invoice in the account, named by the bill's id as its
external id, which always holds the bill's latest version.

Every run sends the complete invoice (``items.netsuite_invoice``: body fields and every line)
as one upsert by external id with ``replace=item``: the first creates the invoice, each later
one (a regeneration, the approval, a retry) makes the same invoice hold exactly these lines.
The upsert is the whole of a run's work, and it is idempotent: a run whose answer was lost
(a timeout, a crash) sends it again and still leaves one invoice with one set of lines, so
no lookup or adoption step is needed before it.

The shared ledger (``domain.integrations.ledger``) records the lines as one write: ``adding``
before the call, ``added`` once NetSuite answered, and the lines an earlier version put on
the invoice are forgotten then. Its document id is the invoice's ``eid:…`` (NetSuite takes
an external id wherever an internal id goes), known before the first write; the bill's sync
state keeps the internal id, which the run reports.

Every call takes its turn under the account's cap of calls at once (``concurrent_calls``,
scope ``netsuite:<account>``: NetSuite governs concurrency per account, across every
integration, and has no per-minute limit); a 429 pushes the account back for every worker.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from domain.destinations.netsuite import SUBSIDIARY_TABLE, NetSuiteConfig, NetSuiteCredential
from domain.destinations.netsuite.items import InvoiceFor, NetSuiteLine, netsuite_invoice
from domain.integrations import ledger
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, LineState, items_hash
from domain.settings import Settings
from workers.connections.http import AuthorizedClient
from workers.destinations.netsuite.client import NetSuiteClient
from workers.destinations.netsuite.connect import authorizer, base_url
from workers.destinations.turns import TenantTurns
from workers.ratelimits import RateLimiter
from workers.runtime import runtime


def perform(
    engine: Engine,
    settings: Settings,
    prepared: Prepared,
    state: BillSync,
    *,
    limiter: RateLimiter | None = None,
) -> RunResult:
    options, credential = prepared.options, prepared.credential
    assert isinstance(options, NetSuiteConfig), type(options)
    assert isinstance(credential, NetSuiteCredential), type(credential)
    rt = runtime()
    turns = TenantTurns(
        limiter or rt.limiter,
        f"netsuite:{credential.realm}",
        [],
        credential.concurrent_calls,
        lease_seconds=settings.http_timeout_seconds + 10,
    )
    http = AuthorizedClient(
        base_url(settings, credential),
        authorizer(engine, rt.box, settings, prepared.credential_id, credential),
        settings.http_timeout_seconds,
        title="NetSuite",
        turns=turns,
    )
    with http, turns.pushed_back_by_429():
        return upsert(engine, NetSuiteClient(http), prepared, options)


def upsert(
    engine: Engine, client: NetSuiteClient, prepared: Prepared, options: NetSuiteConfig
) -> RunResult:
    """Make the bill's invoice hold exactly this version: prepare, call, record."""
    lines = prepared.items_as(NetSuiteLine)
    assert prepared.period_start is not None
    assert prepared.period_end is not None
    bill = InvoiceFor(
        bill_id=prepared.bill_id,
        bill_version=prepared.bill_version,
        currency=prepared.currency,
        period_start=prepared.period_start,
        period_end=prepared.period_end,
        customer_id=prepared.customer_id,
        subsidiary_id=prepared.related.get(SUBSIDIARY_TABLE),
    )
    invoice = netsuite_invoice(bill, options, lines)
    external_id = invoice["externalId"]
    document = f"eid:{external_id}"
    before = ledger.lines_on(engine, prepared, document)
    sending = ledger.begin_write(
        engine,
        prepared,
        document,
        [(line, line.form()) for line in lines],
        f"{prepared.run_id}:upsert",
    )

    invoice_id = client.upsert_invoice(external_id, invoice)

    ledger.forget(engine, before)
    ledger.finish_write(engine, sending)
    ledger.set_invoice(
        engine,
        prepared,
        invoice_id=invoice_id,
        items_hash=items_hash(lines),
        pending_key=None,
        synced_version=prepared.bill_version,
    )
    replaced = sum(1 for line in before if line.state == LineState.ADDED)
    return RunResult(invoice_id, len(lines), replaced, prepared.bill_version)
