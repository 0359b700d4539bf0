"""Chargebee's performer: make the invoice hold exactly the bill's latest version.

Pending-invoice mode (``create_invoice`` off): find the customer's pending invoice (or
the one this bill already sits on), settle any add whose answer was lost, then delete the
lines the bill no longer needs and add the ones it now needs (``domain.integrations.sync``).

Created-invoice mode (``create_invoice`` on): the bill gets an invoice of its own, created
with all its items in one call; when a later version differs, that invoice is voided and a
new one created.

Every write carries a ``chargebee-idempotency-key`` made from the run and the item, and
every step is recorded before the next one, so retries and crashes never add a charge twice.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from domain.destinations.chargebee import ChargebeeConfig
from domain.destinations.chargebee.items import ChargeItem
from domain.destinations.spec import RemoteItem
from domain.errors import TransientError
from domain.integrations import ledger
from domain.integrations.errors import PerformFailed
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, LineState, items_hash, plan_sync
from domain.settings import Settings
from workers.destinations.chargebee.client import ChargebeeClient, Invoice

#: How long to wait for Chargebee to raise the subscription's pending invoice.
PENDING_INVOICE_WAIT_SECONDS = 600.0


def perform(engine: Engine, settings: Settings, prepared: Prepared, state: BillSync) -> RunResult:
    options = prepared.options
    assert isinstance(options, ChargebeeConfig), type(options)
    client = ChargebeeClient(
        site=prepared.site,
        api_key=prepared.api_key,
        url_template=settings.chargebee_url_template,
        timeout=settings.http_timeout_seconds,
    )
    with client:
        if options.create_invoice:
            return _sync_created_invoice(engine, client, prepared, state)
        return _sync_pending_invoice(engine, client, prepared, state)


def _charge_items(prepared: Prepared) -> list[ChargeItem]:
    items = list(prepared.items)
    assert all(isinstance(item, ChargeItem) for item in items)
    return items  # type: ignore[return-value]


def _sync_pending_invoice(
    engine: Engine, client: ChargebeeClient, prepared: Prepared, state: BillSync
) -> RunResult:
    invoice = _target_invoice(client, prepared, state)
    if invoice is None:
        return RunResult(state.invoice_id, 0, 0, prepared.bill_version)
    if state.invoice_id != invoice.id:
        ledger.set_invoice(engine, prepared, invoice_id=invoice.id)
    invoice = _settle_lost_adds(engine, client, prepared, invoice)
    recorded = [
        line
        for line in ledger.lines_on(engine, prepared, invoice.id)
        if line.state == LineState.ADDED
    ]
    plan = plan_sync(prepared.items, recorded, invoice.line_ids)
    ledger.forget(engine, plan.forget)
    if plan.delete:
        stale = [line.line_item_id for line in plan.delete if line.line_item_id]
        key = f"{prepared.run_id}:delete:{items_hash(prepared.items)[:12]}"
        invoice = client.delete_line_items(invoice.id, stale, key)
        ledger.forget(engine, plan.delete)
    for item in plan.add:
        invoice = _add(engine, client, prepared, invoice, item)
    ledger.set_invoice(
        engine,
        prepared,
        items_hash=items_hash(prepared.items),
        synced_version=prepared.bill_version,
    )
    return RunResult(invoice.id, len(plan.add), len(plan.delete), prepared.bill_version)


def _target_invoice(client: ChargebeeClient, prepared: Prepared, state: BillSync) -> Invoice | None:
    """The pending invoice that holds (or will hold) this bill; None when a closed
    invoice already holds exactly this version."""
    if state.invoice_id:
        current = client.invoice(state.invoice_id)
        if current.status == "pending":
            return current
        if state.items_hash == items_hash(prepared.items):
            return None
        raise PerformFailed(
            f"invoice {current.id}, which holds an earlier version of bill {prepared.bill_id}, "
            f"is {current.status}, no longer pending: it cannot be brought up to version "
            f"{prepared.bill_version}; correct it in Chargebee"
        )
    invoice = client.pending_invoice(prepared.customer_id)
    if invoice is None:
        raise TransientError(
            f"Chargebee customer {prepared.customer_id} has no pending invoice yet",
            retry_after=PENDING_INVOICE_WAIT_SECONDS,
        )
    return invoice


def _settle_lost_adds(
    engine: Engine, client: ChargebeeClient, prepared: Prepared, invoice: Invoice
) -> Invoice:
    """An add recorded as started but not as finished: adopt its line if the invoice has
    it, else send it again with the same idempotency key (Chargebee replays it if it did
    land and only its answer was lost)."""
    for line in ledger.lines_on(engine, prepared, invoice.id):
        if line.state != LineState.ADDING:
            continue
        claimed = ledger.claimed_line_ids(engine, prepared, invoice.id)
        found = _new_line(invoice, set(line.ids_before) | claimed, line.item_price_id)
        if found is None:
            invoice = client.add_charge_item(invoice.id, line.form, line.idempotency_key)
            found = _new_line(invoice, set(line.ids_before) | claimed, line.item_price_id)
        if found is None:
            raise PerformFailed(f"Chargebee did not show the line added for {line.item_key}")
        assert line.id is not None
        ledger.finish_add(engine, line.id, found)
    return invoice


def _add(
    engine: Engine, client: ChargebeeClient, prepared: Prepared, invoice: Invoice, item: RemoteItem
) -> Invoice:
    known = invoice.line_ids | ledger.claimed_line_ids(engine, prepared, invoice.id)
    line = ledger.begin_add(engine, prepared, invoice.id, item, invoice.line_ids)
    updated = client.add_charge_item(invoice.id, item.form(), line.idempotency_key)
    line_id = _new_line(updated, known, item.item_price_id)
    if line_id is None:
        raise PerformFailed(f"Chargebee did not show the line added for item {item.key}")
    assert line.id is not None
    ledger.finish_add(engine, line.id, line_id)
    return updated


def _new_line(invoice: Invoice, known: set[str], item_price_id: str) -> str | None:
    fresh = [
        line["id"]
        for line in invoice.line_items
        if line["id"] not in known and line.get("entity_id") == item_price_id
    ]
    return fresh[-1] if fresh else None


def _sync_created_invoice(
    engine: Engine, client: ChargebeeClient, prepared: Prepared, state: BillSync
) -> RunResult:
    wanted = items_hash(prepared.items)
    removed = 0
    invoice_id = state.invoice_id
    key = f"{prepared.run_id}:create"
    if state.pending_key:  # a creation whose answer was lost: its replay tells the invoice
        lost = client.create_invoice(
            prepared.customer_id,
            prepared.currency,
            _create_form(_charge_items(prepared)),
            state.pending_key,
        )
        if state.pending_key == key:  # it was this run's own: record it, done
            ledger.record_created(engine, prepared, lost.id, wanted, _line_ids(lost))
            return RunResult(lost.id, len(prepared.items), 0, prepared.bill_version)
        invoice_id = lost.id
        ledger.set_invoice(engine, prepared, invoice_id=lost.id, pending_key=None, items_hash=None)
    if invoice_id:
        current = client.invoice(invoice_id)
        if current.status != "voided" and state.items_hash == wanted and not state.pending_key:
            return RunResult(current.id, 0, 0, prepared.bill_version)
        if current.status == "paid":
            raise PerformFailed(
                f"invoice {current.id} for bill {prepared.bill_id} is paid: it cannot be "
                f"replaced with version {prepared.bill_version}; correct it in Chargebee"
            )
        if current.status != "voided":
            client.void_invoice(current.id, f"{prepared.run_id}:void:{current.id}")
            removed = len(current.line_items)
        ledger.forget(engine, ledger.lines_on(engine, prepared, current.id))
        ledger.set_invoice(engine, prepared, invoice_id=None, items_hash=None)
    if not prepared.items:
        return RunResult(None, 0, removed, prepared.bill_version)
    ledger.set_invoice(engine, prepared, pending_key=key)
    created = client.create_invoice(
        prepared.customer_id, prepared.currency, _create_form(_charge_items(prepared)), key
    )
    ledger.record_created(engine, prepared, created.id, wanted, _line_ids(created))
    return RunResult(created.id, len(prepared.items), removed, prepared.bill_version)


def _line_ids(invoice: Invoice) -> list[str]:
    return [line["id"] for line in invoice.line_items]


def _create_form(items: list[ChargeItem]) -> dict[str, str]:
    form: dict[str, str] = {}
    for index, item in enumerate(items):
        form.update(item.form("item_prices", index))
    return form
