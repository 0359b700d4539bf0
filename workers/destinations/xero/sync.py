"""Xero's performer: an approved bill has one ``ACCREC`` invoice of its own in the
tenant, which always holds the bill's latest version.

- No invoice yet: create it (``PUT /Invoices``) with every line, the config's
  ``invoice_status`` and the bill's id as ``Reference``. The creation's
  ``Idempotency-Key`` is recorded (``BillSync.pending_key``) before it is sent. A run that
  finds a key still pending (the answer was lost: timeout, crash) first looks for a live
  invoice with that ``Reference`` and adopts it; only when there is none does it send the
  request again, under the same key, so that a first request still in flight is answered
  rather than repeated. (Xero keeps keys for minutes, not days: the search is what makes
  a retry hours later safe.)
- An invoice that holds exactly these lines (the ledger's ``items_hash``): nothing to do.
- A new version while the invoice is ``DRAFT`` or ``SUBMITTED``: its lines are replaced
  (``POST /Invoices/{id}`` with the complete ``LineItems``, which replace all lines).
- ``AUTHORISED`` and no payment: it is ``VOIDED`` and a new invoice is created. With a
  payment, or ``PAID``: ``integration.perform.error``, nothing is changed.
- An invoice voided or deleted in Xero by hand: a new one is created.

Every call takes its turn under the tenant's limits (60 a minute, 5,000 a day, 5 at once;
``workers.destinations.turns``), with the credential's access token, refreshed under a
lock when it expires (``workers.connections``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from domain.destinations.xero import InvoiceStatus, XeroConfig, XeroCredential
from domain.destinations.xero.items import XeroLine
from domain.integrations import ledger
from domain.integrations.errors import PerformFailed
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, items_hash
from domain.ratelimits import Limit
from domain.settings import Settings
from workers.connections.http import AuthorizedClient, BearerAuthorizer
from workers.destinations.turns import TenantTurns
from workers.destinations.xero.client import XeroClient, XeroInvoice
from workers.destinations.xero.connect import xero_app
from workers.ratelimits import RateLimiter
from workers.runtime import runtime

EDITABLE = ("DRAFT", "SUBMITTED")
GONE = ("VOIDED", "DELETED")


def perform(
    engine: Engine,
    settings: Settings,
    prepared: Prepared,
    state: BillSync,
    *,
    limiter: RateLimiter | None = None,
) -> RunResult:
    options, credential = prepared.options, prepared.credential
    assert isinstance(options, XeroConfig), type(options)
    assert isinstance(credential, XeroCredential), type(credential)
    rt = runtime()
    scope = f"xero:{prepared.tenant_id or prepared.credential_id}"
    turns = TenantTurns(
        limiter or rt.limiter,
        scope,
        [Limit(credential.calls_per_minute, 60), Limit(credential.calls_per_day, 86400)],
        credential.concurrent_calls,
        lease_seconds=settings.http_timeout_seconds + 10,
    )
    authorizer = BearerAuthorizer(
        engine,
        rt.box,
        prepared.credential_id,
        xero_app(settings, credential),
    )
    tenant = {"xero-tenant-id": prepared.tenant_id} if prepared.tenant_id else {}
    http = AuthorizedClient(
        settings.xero_api_base,
        authorizer,
        settings.http_timeout_seconds,
        title="Xero",
        turns=turns,
        headers=tenant,
    )
    with http, turns.pushed_back_by_429():
        return _Run(engine, XeroClient(http), prepared, options).sync(state)


@dataclass(frozen=True)
class _Run:
    engine: Engine
    client: XeroClient
    prepared: Prepared
    options: XeroConfig

    @property
    def lines(self) -> list[XeroLine]:
        return self.prepared.items_as(XeroLine)

    def sync(self, state: BillSync) -> RunResult:
        wanted = items_hash(self.lines)
        invoice_id, on_invoice = state.invoice_id, state.items_hash
        if state.pending_key is not None:
            adopted = self._adopt_lost_creation(state.items_hash)
            if adopted is None:
                return self._create(state.pending_key)
            invoice_id = adopted.id
        if invoice_id is None:
            return self._create(f"{self.prepared.run_id}:create")
        invoice = self.client.invoice(invoice_id)
        if invoice is None or invoice.status in GONE:
            return self._create(f"{self.prepared.run_id}:create:{wanted[:12]}")
        if on_invoice == wanted:
            return self._keep(invoice)
        if invoice.status in EDITABLE:
            return self._replace_lines(invoice, wanted)
        if invoice.status == "AUTHORISED" and invoice.amount_paid == 0:
            self.client.update_invoice(
                invoice.id, {"Status": "VOIDED"}, f"{self.prepared.run_id}:void:{invoice.id}"
            )
            ledger.forget(self.engine, ledger.lines_on(self.engine, self.prepared, invoice.id))
            return self._create(
                f"{self.prepared.run_id}:create:{wanted[:12]}", removed=len(invoice.line_ids)
            )
        raise PerformFailed(
            f"Xero invoice {invoice.id} is {invoice.status} with {invoice.amount_paid} paid: "
            "it cannot be changed to the bill's new version; credit it in Xero by hand"
        )

    def _adopt_lost_creation(self, sent: str | None) -> XeroInvoice | None:
        """The live invoice a creation whose answer was lost made, if it landed (never one
        another config of the organisation holds the bill on). It holds what that
        creation sent (``sent``: recorded with its key), which is this run's
        lines when the run was cut off itself."""
        others = ledger.documents_of_other_configs(self.engine, self.prepared)
        found = [
            invoice
            for invoice in self.client.live_invoices_with_reference(self.prepared.bill_id)
            if invoice.id not in others
        ]
        if not found:
            return None
        invoice = found[0]
        if sent == items_hash(self.lines):
            ledger.record_created(self.engine, self.prepared, invoice.id, sent, invoice.line_ids)
        else:
            ledger.set_invoice(self.engine, self.prepared, invoice_id=invoice.id, pending_key=None)
        return invoice

    def _create(self, key: str, removed: int = 0) -> RunResult:
        ledger.set_invoice(
            self.engine, self.prepared, pending_key=key, items_hash=items_hash(self.lines)
        )
        invoice = self.client.create_invoice(self._invoice(), key)
        ledger.record_created(
            self.engine, self.prepared, invoice.id, items_hash(self.lines), invoice.line_ids
        )
        return RunResult(invoice.id, len(self.lines), removed, self.prepared.bill_version)

    def _replace_lines(self, invoice: XeroInvoice, wanted: str) -> RunResult:
        key = f"{self.prepared.run_id}:lines:{wanted[:12]}"
        fields = {"LineItems": [line.line_item() for line in self.lines], **self._status()}
        updated = self.client.update_invoice(invoice.id, fields, key)
        ledger.forget(self.engine, ledger.lines_on(self.engine, self.prepared, invoice.id))
        ledger.record_created(self.engine, self.prepared, updated.id, wanted, updated.line_ids)
        return RunResult(
            updated.id, len(self.lines), len(invoice.line_ids), self.prepared.bill_version
        )

    def _keep(self, invoice: XeroInvoice) -> RunResult:
        """The lines are right; a draft is authorised when the config now says so."""
        if invoice.status == "DRAFT" and self.options.invoice_status == InvoiceStatus.AUTHORISED:
            key = f"{self.prepared.run_id}:authorise:{invoice.id}"
            self.client.update_invoice(invoice.id, self._status(), key)
        return RunResult(invoice.id, 0, 0, self.prepared.bill_version)

    def _status(self) -> dict[str, Any]:
        status = self.options.invoice_status.value
        fields: dict[str, Any] = {"Status": status}
        if status == "AUTHORISED":
            fields["DueDate"] = self._due_date()
        return fields

    def _due_date(self) -> str:
        assert self.prepared.period_end is not None
        return (self.prepared.period_end + timedelta(days=self.options.due_days)).isoformat()

    def _invoice(self) -> dict[str, Any]:
        prepared = self.prepared
        assert prepared.period_end is not None
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": prepared.customer_id},
            "Date": prepared.period_end.isoformat(),
            "DueDate": self._due_date(),
            "LineAmountTypes": self.options.line_amount_types.value,
            "CurrencyCode": prepared.currency.upper(),
            "Reference": prepared.bill_id,
            "Status": self.options.invoice_status.value,
            "LineItems": [line.line_item() for line in self.lines],
        }
