"""QuickBooks Online's performer: an approved bill has one invoice of its own in the
connected company, which always holds the bill's latest version. There is never a second
invoice for a bill.

- No invoice yet: create it (``POST /invoice``) for the account's customer, with every
  line, ``TxnDate`` the bill's period end, ``DueDate`` ``due_days`` later, and a
  ``PrivateNote`` naming the bill, its version and the config. Its ``requestid`` is
  recorded (``BillSync.pending_key``) before it is sent.
- An invoice that holds exactly these lines (the ledger's ``items_hash``): nothing to do.
- A new version: its lines are replaced, by a sparse update with the complete ``Line``
  array and the invoice's current ``SyncToken``; anything a person changed besides the
  lines stays. A stale ``SyncToken`` (fault 5010: the invoice changed since it was read)
  is read again and the update tried once more; a second one is transient, and the run
  retries later. An invoice with a payment applied (``Balance`` below ``TotalAmt``), one
  voided in QuickBooks, or one now for another customer is not touched:
  ``integration.perform.error`` says why, and a person settles it in QuickBooks.
- An invoice deleted in QuickBooks is gone (reads answer 610): a new one is created.

**A lost answer** (a timeout, a crash after sending): the next attempt finds the
``pending_key`` and first looks among the customer's newest invoices for one whose
``PrivateNote`` names this bill and config; only when there is none does it send the
creation again *under the same requestid*. Why that does not make a second invoice:
QuickBooks answers a repeated requestid with the first answer and writes nothing, so a
creation that landed is answered, not repeated, and one that never landed is done now;
and because Intuit does not say how long it keeps a requestid, the search comes first, so
that a retry hours later (a worker that died, a run released after its lease) finds the
invoice even once the requestid is forgotten. The note cannot match another bill's or
another config's invoice: it names both ids; the search is by customer (``CustomerRef``,
newest first) because QuickBooks cannot query ``PrivateNote``. ``DocNumber``, which can be
queried, is not used: it is the company's own invoice numbering, and at most 21
characters. (What is left: a person who rewrites that note, or 100 newer invoices for the
customer, before a retry that comes after QuickBooks forgot the requestid.) An invoice
found or answered this way holds what the lost creation sent; when the bill changed
since, its lines are then replaced as for a new version.

Every call takes its turn under the company's limits (500 a minute, 10 at once;
``workers.destinations.turns``, scope ``quickbooks:<realm>``), with the credential's
access token, refreshed under a lock when it expires (``workers.connections``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from domain.destinations.quickbooks import QuickBooksConfig, QuickBooksCredential
from domain.destinations.quickbooks.items import QuickBooksLine
from domain.integrations import ledger
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, items_hash
from domain.ratelimits import Limit
from domain.settings import Settings
from workers.connections.http import AuthorizedClient, BearerAuthorizer
from workers.destinations.quickbooks.client import (
    MAX_REQUEST_ID,
    QuickBooksClient,
    QuickBooksInvoice,
    StaleSyncToken,
    api_base,
)
from workers.destinations.quickbooks.connect import quickbooks_app
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
    assert isinstance(options, QuickBooksConfig), type(options)
    assert isinstance(credential, QuickBooksCredential), type(credential)
    realm = prepared.tenant_id
    if realm is None:
        raise AuthenticationFailed(
            f"credential {prepared.credential_id} is connected to no QuickBooks company: "
            "connect it again"
        )
    rt = runtime()
    turns = TenantTurns(
        limiter or rt.limiter,
        f"quickbooks:{realm}",
        [Limit(credential.calls_per_minute, 60)],
        credential.concurrent_calls,
        lease_seconds=settings.http_timeout_seconds + 10,
    )
    authorizer = BearerAuthorizer(
        engine,
        rt.box,
        prepared.credential_id,
        quickbooks_app(settings, credential),
    )
    http = AuthorizedClient(
        api_base(settings, credential),
        authorizer,
        settings.http_timeout_seconds,
        title="QuickBooks",
        turns=turns,
    )
    with http, turns.pushed_back_by_429():
        return _Run(engine, QuickBooksClient(http, realm), prepared, options).sync(state)


def replace_lines(
    client: QuickBooksClient,
    invoice: QuickBooksInvoice,
    fields: dict[str, Any],
    *,
    customer_id: str,
    request_id: Callable[[QuickBooksInvoice], str],
) -> QuickBooksInvoice:
    """``fields`` (the ``Line`` array and the note) written over ``invoice`` by a sparse
    update, if it may still be changed; a stale ``SyncToken`` is read again and the
    update tried once more (a second ``StaleSyncToken`` leaves, and the run retries).
    ``request_id``: the update's requestid for the invoice as read (its SyncToken)."""
    _check_changeable(invoice, customer_id)
    try:
        return client.update_invoice(invoice.id, invoice.sync_token, fields, request_id(invoice))
    except StaleSyncToken:
        fresh = client.invoice(invoice.id)
        if fresh is None:
            raise PerformFailed(
                f"QuickBooks invoice {invoice.id} was deleted while its lines were replaced"
            ) from None
        _check_changeable(fresh, customer_id)
        return client.update_invoice(fresh.id, fresh.sync_token, fields, request_id(fresh))


def _check_changeable(invoice: QuickBooksInvoice, customer_id: str) -> None:
    if invoice.voided:
        raise PerformFailed(
            f"QuickBooks invoice {invoice.id} was voided in QuickBooks: it cannot take the "
            "bill's new version, and a second invoice for the bill is never made; "
            "invoice the difference in QuickBooks by hand"
        )
    if invoice.customer_id != customer_id:
        raise PerformFailed(
            f"QuickBooks invoice {invoice.id} is for customer {invoice.customer_id}, not "
            f"{customer_id} (the account's mapping now): it is left as it is"
        )
    if invoice.balance < invoice.total:
        raise PerformFailed(
            f"QuickBooks invoice {invoice.id} has a payment applied ({invoice.paid:.2f} of "
            f"{invoice.total:.2f} paid): it cannot be changed to the bill's new version; "
            "credit or adjust it in QuickBooks by hand"
        )


@dataclass(frozen=True)
class _Run:
    engine: Engine
    client: QuickBooksClient
    prepared: Prepared
    options: QuickBooksConfig

    @property
    def lines(self) -> Sequence[QuickBooksLine]:
        return self.prepared.items_as(QuickBooksLine)

    def sync(self, state: BillSync) -> RunResult:
        wanted = items_hash(self.lines)
        if state.pending_key is not None:
            return self._finish_lost_creation(state.pending_key, state.items_hash, wanted)
        if state.invoice_id is None:
            return self._create(self._request_id("create"))
        invoice = self.client.invoice(state.invoice_id)
        if invoice is None:  # deleted in QuickBooks: the bill has no invoice now
            ledger.forget(
                self.engine, ledger.lines_on(self.engine, self.prepared, state.invoice_id)
            )
            return self._create(self._request_id("recreate", state.invoice_id))
        if state.items_hash == wanted:
            return RunResult(invoice.id, 0, 0, self.prepared.bill_version)
        return self._replace_lines(invoice, wanted)

    def _finish_lost_creation(self, key: str, sent: str | None, wanted: str) -> RunResult:
        """See the module's docstring: found again, else sent again under its requestid."""
        invoice = self._find_lost_creation() or self.client.create_invoice(self._invoice(), key)
        if sent == wanted:
            ledger.record_created(self.engine, self.prepared, invoice.id, wanted, invoice.line_ids)
            return RunResult(invoice.id, len(self.lines), 0, self.prepared.bill_version)
        ledger.set_invoice(self.engine, self.prepared, invoice_id=invoice.id, pending_key=None)
        return self._replace_lines(invoice, wanted)

    def _find_lost_creation(self) -> QuickBooksInvoice | None:
        for invoice in self.client.newest_invoices_of(self.prepared.customer_id):
            note = invoice.private_note
            if (
                self.prepared.bill_id in note
                and self.prepared.config_id in note
                and not invoice.voided
            ):
                return invoice
        return None

    def _create(self, request_id: str) -> RunResult:
        wanted = items_hash(self.lines)
        ledger.set_invoice(self.engine, self.prepared, pending_key=request_id, items_hash=wanted)
        invoice = self.client.create_invoice(self._invoice(), request_id)
        ledger.record_created(self.engine, self.prepared, invoice.id, wanted, invoice.line_ids)
        return RunResult(invoice.id, len(self.lines), 0, self.prepared.bill_version)

    def _replace_lines(self, invoice: QuickBooksInvoice, wanted: str) -> RunResult:
        updated = replace_lines(
            self.client,
            invoice,
            {"Line": [line.line() for line in self.lines], "PrivateNote": self._note()},
            customer_id=self.prepared.customer_id,
            request_id=lambda read: self._request_id("update", read.id, read.sync_token),
        )
        ledger.forget(self.engine, ledger.lines_on(self.engine, self.prepared, invoice.id))
        ledger.record_created(self.engine, self.prepared, updated.id, wanted, updated.line_ids)
        return RunResult(
            updated.id, len(self.lines), len(invoice.line_ids), self.prepared.bill_version
        )

    def _request_id(self, *parts: str) -> str:
        """Unique per company (run ids are unique), the same for the same write of the
        same run, and at most 50 characters: a long tail is hashed."""
        tail = ":".join(parts)
        request_id = f"{self.prepared.run_id}:{tail}"
        if len(request_id) <= MAX_REQUEST_ID:
            return request_id
        room = MAX_REQUEST_ID - len(self.prepared.run_id) - 1
        return f"{self.prepared.run_id}:{hashlib.sha256(tail.encode()).hexdigest()[:room]}"

    def _note(self) -> str:
        prepared = self.prepared
        return (
            f"meterbridge bill {prepared.bill_id}, version {prepared.bill_version} "
            f"(integration {prepared.config_id})"
        )

    def _invoice(self) -> dict[str, Any]:
        prepared = self.prepared
        assert prepared.period_end is not None
        due = prepared.period_end + timedelta(days=self.options.due_days)
        return {
            "CustomerRef": {"value": prepared.customer_id},
            "CurrencyRef": {"value": prepared.currency.upper()},
            "TxnDate": prepared.period_end.isoformat(),
            "DueDate": due.isoformat(),
            "PrivateNote": self._note(),
            "Line": [line.line() for line in self.lines],
        }
