"""Stripe's performer: make Stripe hold exactly the bill's latest version, never the sum.

``invoicing``: the bill gets a draft invoice of its own (``auto_advance=false``,
``pending_invoice_items_behavior=exclude``, ``metadata[bill_id]``), holding one invoice
item per item. A later run compares the items the bill needs now with the items recorded
on that draft (``domain.integrations.sync.plan_sync``): it deletes those no longer needed,
adds the missing ones and leaves the rest. With ``finalize_on_approval`` the approval's run
finalizes the draft. An invoice that is no longer a draft is left alone: when it already
holds exactly these items the run has nothing to do, otherwise it ends in
``integration.perform.error`` (``PerformFailed``) rather than charge twice.

``subscription_invoicing``: no invoice; the items are pending invoice items on the customer
(on its subscription with ``use_subscription``), which Stripe puts on the next invoice it
raises. A run replaces the items still pending the same way; an item of ours that Stripe
has already invoiced and that the bill no longer needs ends the run in
``integration.perform.error``, before anything is written.

Never twice. Each item is recorded (``ledger.begin_add``, state ``adding``) before it is
sent with ``Idempotency-Key: <run id>:<item key>`` and ``metadata[meterbridge_bill]`` /
``metadata[meterbridge_line]`` (the record's id), and confirmed with Stripe's id after
(``finish_add``). A run that finds a record still ``adding`` (the answer was lost: timeout,
crash) looks for the item by that metadata and adopts it; if it is not there it sends again
under the same key, which Stripe replays if the first request is still to land. A creation
of the invoice is recorded the same way (``BillSync.pending_key``) and replayed under its key.

A 500 that Stripe keeps under the key (``KeptFailure``: Stripe replays it for 24 hours or
more) would make every retry fail the same way. After such an answer the run looks again
and, when the item (or invoice) is confirmed absent, records a fresh key derived from the
old one (``<key>#1``, ``#2``...) and sends under that: the failed request left nothing, so
nothing can be charged twice.

Every request first takes its turn under the credential's shared rate limits
(``turns.StripeTurns``); a 429 pushes the credential back by its ``Retry-After`` and the run
waits for its turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from domain.destinations.spec import RemoteItem
from domain.destinations.stripe import StripeConfig, StripeCredential, StripeMode
from domain.destinations.stripe.options import CollectionMethod
from domain.integrations import ledger
from domain.integrations.errors import PerformFailed
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, LineState, RemoteLine, items_hash, plan_sync
from domain.settings import Settings
from workers.destinations.stripe.client import (
    Invoice,
    InvoiceItem,
    KeptFailure,
    StripeClient,
)
from workers.destinations.stripe.turns import StripeTurns
from workers.ratelimits import RateLimiter
from workers.runtime import runtime

APPROVED = "bill.approved"
#: The ledger's name for a customer's pending items (``subscription_invoicing``).
PENDING_DOCUMENT = "{customer}:pending"


def perform(
    engine: Engine,
    settings: Settings,
    prepared: Prepared,
    state: BillSync,
    *,
    limiter: RateLimiter | None = None,
) -> RunResult:
    """``limiter``: the worker process's (``workers.runtime``) unless given."""
    options, credential = prepared.options, prepared.credential
    assert isinstance(options, StripeConfig), type(options)
    assert isinstance(credential, StripeCredential), type(credential)
    turns = StripeTurns(
        limiter or runtime().limiter,
        prepared.credential_id,
        credential,
        jitter_margin=settings.stripe_jitter_margin_seconds,
    )
    client = StripeClient(
        prepared.api_key,
        settings.stripe_api_base,
        settings.http_timeout_seconds,
        before_request=turns.take,
    )
    run = _Run(engine, client, prepared, options)
    with client, turns.pushed_back_by_429():
        if options.stripe_mode == StripeMode.INVOICING:
            return _sync_invoice(run, state)
        return _sync_pending_items(run, state)


@dataclass(frozen=True)
class _Run:
    engine: Engine
    client: StripeClient
    prepared: Prepared
    options: StripeConfig

    def result(self, invoice_id: str | None, added: int = 0, removed: int = 0) -> RunResult:
        return RunResult(invoice_id, added, removed, self.prepared.bill_version)


@dataclass(frozen=True)
class _Document:
    """Where a run's items go: a draft invoice, or the customer's pending items."""

    #: The ledger's document id: the invoice's, or ``<customer>:pending``.
    id: str
    invoice: str | None
    subscription: str | None
    #: Every item of ours that can be there, for a run that settles a lost add.
    look: Callable[[], list[InvoiceItem]]


# --- invoicing ------------------------------------------------------------------------------


def _sync_invoice(run: _Run, state: BillSync) -> RunResult:
    invoice = _bill_invoice(run, state)
    if invoice is None:  # nothing to send, or a closed invoice holds exactly these items
        return run.result(state.invoice_id)
    document = _Document(
        invoice.id, invoice.id, None, lambda: run.client.list_invoice_items(invoice=invoice.id)
    )
    rows = ledger.lines_on(run.engine, run.prepared, document.id)
    known = document.look() if rows else []
    added, removed = _match(run, document, rows, known, locked={})
    ledger.set_invoice(
        run.engine,
        run.prepared,
        items_hash=items_hash(run.prepared.items),
        synced_version=run.prepared.bill_version,
    )
    if run.options.finalize_on_approval and run.prepared.trigger == APPROVED and run.prepared.items:
        run.client.finalize_invoice(
            invoice.id, key=f"{run.prepared.run_id}:finalize", auto_advance=True
        )
    return run.result(invoice.id, added, removed)


def _bill_invoice(run: _Run, state: BillSync) -> Invoice | None:
    """The draft that holds (or will hold) the bill; None when there is nothing to do: no
    invoice and no items, or an invoice no longer a draft that holds exactly these items."""
    prepared = run.prepared
    if state.invoice_id:
        current = run.client.invoice(state.invoice_id)
        if current.is_draft:
            return current
        if state.items_hash == items_hash(prepared.items):
            return None
        held = _held(state.synced_version)
        raise PerformFailed(
            f"Stripe invoice {current.id} holds {held} of bill {prepared.bill_id} and is "
            f"{current.status}, no longer a draft: it cannot be brought to version "
            f"{prepared.bill_version} without charging twice; correct it in Stripe (void it or "
            "issue a credit note)"
        )
    if not prepared.items:
        return None
    key = state.pending_key  # a creation whose answer was lost: its replay tells the invoice
    if key is None:
        key = f"{prepared.run_id}:invoice"
        ledger.set_invoice(run.engine, prepared, pending_key=key)
    try:
        invoice = _create_invoice(run, key)
    except KeptFailure:
        found = _our_draft(run)
        if found is None:
            key = _fresh_key(key)
            ledger.set_invoice(run.engine, prepared, pending_key=key)
            found = _create_invoice(run, key)
        invoice = found
    ledger.set_invoice(
        run.engine,
        prepared,
        invoice_id=invoice.id,
        pending_key=None,
        items_hash=None,
        synced_version=None,
    )
    return invoice


def _create_invoice(run: _Run, key: str) -> Invoice:
    options = run.options
    sends = options.collection_method == CollectionMethod.SEND_INVOICE
    return run.client.create_invoice(
        customer=run.prepared.customer_id,
        currency=run.prepared.currency,
        collection_method=options.collection_method.value,
        days_until_due=options.days_until_due if sends else None,
        metadata=_invoice_metadata(run.prepared),
        key=key,
    )


def _invoice_metadata(prepared: Prepared) -> dict[str, str]:
    return {"bill_id": prepared.bill_id, "meterbridge_config": prepared.config_id}


def _our_draft(run: _Run) -> Invoice | None:
    """The customer's draft invoice made for this bill and config, if a creation left one."""
    wanted = _invoice_metadata(run.prepared)
    drafts = run.client.list_invoices(customer=run.prepared.customer_id, status="draft")
    ours = [d for d in drafts if all(d.metadata.get(k) == v for k, v in wanted.items())]
    return ours[-1] if ours else None  # newest first: the oldest, should there be two


# --- subscription invoicing -----------------------------------------------------------------


def _sync_pending_items(run: _Run, state: BillSync) -> RunResult:
    prepared, client = run.prepared, run.client
    customer = prepared.customer_id
    document = _Document(
        PENDING_DOCUMENT.format(customer=customer),
        None,
        prepared.related.get("subscription"),
        lambda: client.list_invoice_items(customer=customer),
    )
    rows = ledger.lines_on(run.engine, prepared, document.id)
    if any(row.state == LineState.ADDING for row in rows):
        known = document.look()  # pending or invoiced since: a lost add may be either
    else:
        known = client.list_invoice_items(customer=customer, pending=True) if rows else []
        pending = {item.id for item in known}
        for row in rows:  # ours and no longer pending: invoiced, or deleted in Stripe
            if row.line_item_id and row.line_item_id not in pending:
                item = client.invoice_item(row.line_item_id)
                if item is not None:
                    known.append(item)
    locked = {item.id: item.invoice or "" for item in known if not item.pending}
    added, removed = _match(run, document, rows, known, locked=locked, state=state)
    ledger.set_invoice(
        run.engine,
        prepared,
        items_hash=items_hash(prepared.items),
        synced_version=prepared.bill_version,
    )
    return run.result(None, added, removed)


# --- both: the items ------------------------------------------------------------------------


def _match(
    run: _Run,
    document: _Document,
    rows: list[RemoteLine],
    known: list[InvoiceItem],
    *,
    locked: dict[str, str],
    state: BillSync | None = None,
) -> tuple[int, int]:
    """Make the document hold exactly the run's items. ``known``: the items of ours the
    document holds now; ``locked``: those of them Stripe has invoiced (id → invoice),
    which can no longer change. Returns (items added, items removed)."""
    engine, prepared = run.engine, run.prepared
    known = known + _settle_lost_adds(run, document, rows, known)
    recorded = [
        line
        for line in ledger.lines_on(engine, prepared, document.id)
        if line.state == LineState.ADDED
    ]
    plan = plan_sync(prepared.items, recorded, {item.id for item in known})
    stuck = [line for line in plan.delete if line.line_item_id in locked]
    if stuck:
        invoices = sorted({locked[line.line_item_id or ""] for line in stuck})
        held = _held(state.synced_version if state else None)
        raise PerformFailed(
            f"Stripe has already invoiced {len(stuck)} item(s) of {held} of bill "
            f"{prepared.bill_id} that version {prepared.bill_version} no longer has (on "
            f"{', '.join(invoices)}): the customer's items cannot be brought to version "
            f"{prepared.bill_version} without charging twice; correct it in Stripe"
        )
    ledger.forget(engine, plan.forget)
    for line in plan.delete:
        assert line.line_item_id is not None
        run.client.delete_invoice_item(
            line.line_item_id, key=f"{prepared.run_id}:delete:{line.line_item_id}"
        )
        ledger.forget(engine, [line])
    for item in plan.add:
        _add(run, document, item)
    return len(plan.add), len(plan.delete)


def _add(run: _Run, document: _Document, item: RemoteItem) -> None:
    line = ledger.begin_add(run.engine, run.prepared, document.id, item, set())
    sent = _send(run, document, line)
    assert line.id is not None
    ledger.finish_add(run.engine, line.id, sent.id)


def _settle_lost_adds(
    run: _Run, document: _Document, rows: list[RemoteLine], known: list[InvoiceItem]
) -> list[InvoiceItem]:
    """Adds recorded as started but not finished: adopt the item Stripe holds for each,
    else send it again under its key. Returns the items adopted or sent."""
    settled: list[InvoiceItem] = []
    adding = [row for row in rows if row.state == LineState.ADDING]
    if not adding:
        return settled
    claimed = ledger.claimed_line_ids(run.engine, run.prepared, document.id)
    for line in adding:
        item = _written_for(line, known, claimed) or _send(run, document, line)
        assert line.id is not None
        ledger.finish_add(run.engine, line.id, item.id)
        claimed.add(item.id)
        settled.append(item)
    return settled


def _send(run: _Run, document: _Document, line: RemoteLine) -> InvoiceItem:
    """Send the recorded line under its key; after a failure Stripe keeps under that key,
    adopt the item if it is there after all, else send under a fresh key."""
    assert line.id is not None
    form = {
        **line.form,
        "metadata[meterbridge_bill]": line.bill_id,
        "metadata[meterbridge_line]": str(line.id),
    }

    def send(key: str) -> InvoiceItem:
        return run.client.create_invoice_item_from_form(
            form,
            key=key,
            customer=run.prepared.customer_id,
            invoice=document.invoice,
            subscription=document.subscription,
        )

    try:
        return send(line.idempotency_key)
    except KeptFailure:
        claimed = ledger.claimed_line_ids(run.engine, run.prepared, document.id)
        found = _written_for(line, document.look(), claimed)
        if found is not None:
            return found
        key = _fresh_key(line.idempotency_key)
        ledger.rekey(run.engine, line.id, key)
        return send(key)


def _written_for(
    line: RemoteLine, items: Sequence[InvoiceItem], claimed: set[str]
) -> InvoiceItem | None:
    """The item sent for this record: its metadata names the bill and the record, and no
    other record claims it."""
    for item in items:
        if (
            item.metadata.get("meterbridge_line") == str(line.id)
            and item.metadata.get("meterbridge_bill") == line.bill_id
            and item.id not in claimed
        ):
            return item
    return None


def _held(version: int | None) -> str:
    return f"version {version}" if version else "an earlier version"


_NUMBERED = re.compile(r"(?P<base>.*)#(?P<n>\d+)")
_KEY_LENGTH = 100  # the ledger's column; Stripe takes up to 255


def _fresh_key(key: str) -> str:
    """``k`` → ``k#1`` → ``k#2``: a key Stripe has kept nothing under, derived from the old."""
    match = _NUMBERED.fullmatch(key)
    base, number = (match["base"], int(match["n"]) + 1) if match else (key, 1)
    suffix = f"#{number}"
    return base[: _KEY_LENGTH - len(suffix)] + suffix
