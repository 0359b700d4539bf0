"""What a run records as it goes, each step in its own short transaction so a run cut off
anywhere leaves an accurate account of what the destination holds: a line is recorded
``adding`` before it is sent and ``added`` (with its remote id) after. Shared by every
destination.

A document is named by (organisation, site, document id): Chargebee numbers invoices per
site, so every query for the lines on a document carries all three (``_on_invoice``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Engine
from sqlmodel import col, delete, select, update

from domain.db import transaction
from domain.destinations.spec import RemoteItem
from domain.integrations.runs import Prepared
from domain.integrations.sync import BillSync, LineState, RemoteLine


def _on_invoice(prepared: Prepared, invoice_id: str) -> list[ColumnElement[bool]]:
    """This run's invoice: its id on the site of the run's credential, in the run's
    organisation. A line recorded with an unknown site (before 0005) matches no run."""
    return [
        col(RemoteLine.org_id) == prepared.org_id,
        col(RemoteLine.site) == prepared.site,
        col(RemoteLine.invoice_id) == invoice_id,
    ]


def _line(prepared: Prepared, invoice_id: str, item: RemoteItem, **fields: Any) -> RemoteLine:
    """A ledger row for ``item`` on the document ``invoice_id``, sent by this run."""
    return RemoteLine(
        org_id=prepared.org_id,
        config_id=prepared.config_id,
        bill_id=prepared.bill_id,
        destination=prepared.destination,
        credential_id=prepared.credential_id,
        site=prepared.site,
        invoice_id=invoice_id,
        run_id=prepared.run_id,
        item_key=item.key,
        item_price_id=item.item_price_id,
        fingerprint=item.fingerprint,
        **fields,
    )


def lines_on(engine: Engine, prepared: Prepared, invoice_id: str) -> list[RemoteLine]:
    """The lines this run's (config, bill) recorded on the invoice."""
    with transaction(engine) as session:
        statement = select(RemoteLine).where(
            *_on_invoice(prepared, invoice_id),
            col(RemoteLine.config_id) == prepared.config_id,
            col(RemoteLine.bill_id) == prepared.bill_id,
        )
        return list(session.exec(statement.order_by(col(RemoteLine.id))))


def claimed_line_ids(engine: Engine, prepared: Prepared, invoice_id: str) -> set[str]:
    """Line ids on the invoice that some run (of any config or bill) already recorded as
    its own."""
    with transaction(engine) as session:
        statement = select(RemoteLine.line_item_id).where(
            *_on_invoice(prepared, invoice_id), col(RemoteLine.line_item_id).is_not(None)
        )
        return {line_id for line_id in session.exec(statement) if line_id}


def begin_add(
    engine: Engine, prepared: Prepared, invoice_id: str, item: RemoteItem, ids_before: set[str]
) -> RemoteLine:
    key = f"{prepared.run_id}:{item.key}"[:100]
    with transaction(engine) as session:
        line = _line(
            prepared,
            invoice_id,
            item,
            idempotency_key=key,
            ids_before=sorted(ids_before),
            form=item.form(),
        )
        session.add(line)
    return line


def finish_add(engine: Engine, line_row_id: int, line_item_id: str) -> None:
    with transaction(engine) as session:
        line = session.get(RemoteLine, line_row_id)
        assert line is not None
        line.state, line.line_item_id = LineState.ADDED, line_item_id
        session.add(line)


def rekey(engine: Engine, line_row_id: int, idempotency_key: str) -> None:
    """The key a line's next send carries, recorded before that send: for a destination
    that keeps a failed answer under the old key (a Stripe 500) once the run has made sure
    the failed send left nothing behind."""
    with transaction(engine) as session:
        line = session.get(RemoteLine, line_row_id)
        assert line is not None
        line.idempotency_key = idempotency_key
        session.add(line)


def forget(engine: Engine, rows: list[RemoteLine]) -> None:
    if rows:
        with transaction(engine) as session:
            ids = [row.id for row in rows]
            session.exec(delete(RemoteLine).where(col(RemoteLine.id).in_(ids)))


def set_invoice(engine: Engine, prepared: Prepared, **values: object) -> None:
    with transaction(engine) as session:
        sync = session.get(BillSync, (prepared.config_id, prepared.bill_id))
        assert sync is not None
        for name, value in values.items():
            setattr(sync, name, value)
        session.add(sync)


def record_created(
    engine: Engine, prepared: Prepared, invoice_id: str, items_hash: str, line_ids: list[str]
) -> None:
    """A created invoice and its lines, in the order the items were sent."""
    with transaction(engine) as session:
        sync = session.get(BillSync, (prepared.config_id, prepared.bill_id))
        assert sync is not None
        sync.invoice_id, sync.items_hash, sync.pending_key = invoice_id, items_hash, None
        sync.synced_version = prepared.bill_version
        session.add(sync)
        for item, line_id in zip(prepared.items, line_ids, strict=False):
            session.add(
                _line(
                    prepared,
                    invoice_id,
                    item,
                    state=LineState.ADDED,
                    idempotency_key=f"{prepared.run_id}:create",
                    line_item_id=line_id,
                    form=item.form(),
                )
            )


def lines_of_bill(engine: Engine, prepared: Prepared) -> list[RemoteLine]:
    """Every line this run's (config, bill) recorded, on any document of the run's site:
    for destinations whose documents cannot be taken back (Paddle's one-time charges), what
    went out for a bill counts wherever it went."""
    with transaction(engine) as session:
        statement = select(RemoteLine).where(
            col(RemoteLine.org_id) == prepared.org_id,
            col(RemoteLine.site) == prepared.site,
            col(RemoteLine.config_id) == prepared.config_id,
            col(RemoteLine.bill_id) == prepared.bill_id,
        )
        return list(session.exec(statement.order_by(col(RemoteLine.id))))


def begin_write(
    engine: Engine,
    prepared: Prepared,
    document_id: str,
    items: Sequence[tuple[RemoteItem, dict[str, str]]],
    key: str,
) -> list[RemoteLine]:
    """Record, in one transaction, items about to go out in one call that writes them all
    (each ``adding``, with ``key`` naming the call and the form that is sent for it)."""
    with transaction(engine) as session:
        lines = [
            _line(
                prepared,
                document_id,
                item,
                idempotency_key=key[:100],
                form=form,
            )
            for item, form in items
        ]
        session.add_all(lines)
    return lines


def finish_write(engine: Engine, lines: Sequence[RemoteLine]) -> None:
    """The call that wrote ``lines`` was answered (or found to have landed): ``added``."""
    if lines:
        with transaction(engine) as session:
            ids = [line.id for line in lines]
            session.exec(
                update(RemoteLine).where(col(RemoteLine.id).in_(ids)).values(state=LineState.ADDED)
            )


def documents_of_other_configs(engine: Engine, prepared: Prepared) -> set[str]:
    """The documents other configs of the organisation hold this bill on: a search for a
    creation whose answer was lost must not adopt one of theirs."""
    with transaction(engine) as session:
        statement = select(BillSync.invoice_id).where(
            col(BillSync.org_id) == prepared.org_id,
            col(BillSync.bill_id) == prepared.bill_id,
            col(BillSync.config_id) != prepared.config_id,
            col(BillSync.invoice_id).is_not(None),
        )
        return {invoice_id for invoice_id in session.exec(statement) if invoice_id}
