"""Keeping an invoice exact: it must hold the latest version of a bill, never the sum of
its versions.

Shared by every destination. meterbridge records every line it put on a remote document
(``RemoteLine``: the bill, the item's fingerprint, the remote line's id). A document is
known by organisation, site and document id together: Chargebee numbers invoices per
site, so two sites (of two organisations, or two credentials of one) can each have an
invoice ``inv_1``, and neither must see, claim or delete the other's lines (destinations
whose ids are global use their name as the site). A run compares the items the bill needs now
with the lines recorded and still present on the invoice, as multisets of fingerprints:
lines no longer needed are deleted, missing items are added, the rest stay. A line is
recorded as ``adding`` (with the line ids the invoice had before, and the idempotency key)
before the call, and ``added`` after, so a run cut off mid-call can tell afterwards
whether the line landed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from domain.clock import utcnow
from domain.destinations.spec import RemoteItem


class LineState(StrEnum):
    ADDING = "adding"
    ADDED = "added"


class RemoteLine(SQLModel, table=True):
    __tablename__ = "remote_line"
    __table_args__ = (
        sa.Index("ix_remote_line_bill", "config_id", "bill_id"),
        sa.Index("ix_remote_line_invoice", "org_id", "site", "invoice_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    config_id: str = Field(foreign_key="integration_config.id", max_length=40)
    bill_id: str = Field(foreign_key="bill.id", max_length=40)
    destination: str = Field(default="chargebee", max_length=32)
    #: The credential that sent the line (no foreign key: a credential can be deleted once
    #: detached, and the line stays on the invoice). None: recorded before 0005 by a config
    #: that had no credential then.
    credential_id: str | None = Field(default=None, max_length=40)
    #: The remote account that numbers the document (a Chargebee site: invoice ids are
    #: only unique within a site; the destination's name where ids are global). None:
    #: unknown (recorded before 0005 by a config that had no credential then); such a line
    #: is no run's.
    site: str | None = Field(default=None, max_length=63)
    invoice_id: str = Field(max_length=100)
    run_id: str = Field(max_length=40)
    item_key: str = Field(max_length=200)
    item_price_id: str = Field(max_length=100)
    fingerprint: str = Field(max_length=64)
    state: str = Field(default=LineState.ADDING, max_length=16)
    idempotency_key: str = Field(max_length=100)
    line_item_id: str | None = Field(default=None, max_length=100)
    ids_before: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    form: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class BillSync(SQLModel, table=True):
    """One row per (config, bill): which invoice holds the bill, and who is syncing it."""

    __tablename__ = "bill_sync"

    config_id: str = Field(foreign_key="integration_config.id", primary_key=True, max_length=40)
    bill_id: str = Field(foreign_key="bill.id", primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    invoice_id: str | None = Field(default=None, max_length=100)
    items_hash: str | None = Field(default=None, max_length=64)
    #: Idempotency key of an invoice creation whose answer was not recorded yet.
    pending_key: str | None = Field(default=None, max_length=100)
    locked_by: str | None = Field(default=None, max_length=40)
    locked_until: datetime | None = None
    synced_version: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class SyncPlan:
    keep: list[RemoteLine] = field(default_factory=list)
    delete: list[RemoteLine] = field(default_factory=list)
    forget: list[RemoteLine] = field(default_factory=list)  # gone from the invoice
    add: list[RemoteItem] = field(default_factory=list)


def plan_sync(
    desired: Sequence[RemoteItem], recorded: Iterable[RemoteLine], present: set[str]
) -> SyncPlan:
    """``recorded``: our ``added`` lines on the invoice; ``present``: the invoice's line ids."""
    plan = SyncPlan()
    wanted = Counter(item.fingerprint for item in desired)
    for line in recorded:
        if line.line_item_id not in present:
            plan.forget.append(line)
        elif wanted[line.fingerprint] > 0:
            wanted[line.fingerprint] -= 1
            plan.keep.append(line)
        else:
            plan.delete.append(line)
    for item in desired:
        if wanted[item.fingerprint] > 0:
            wanted[item.fingerprint] -= 1
            plan.add.append(item)
    return plan


def items_hash(items: Iterable[RemoteItem]) -> str:
    """Order-sensitive hash of a created invoice's items."""
    return hashlib.sha256("|".join(item.fingerprint for item in items).encode()).hexdigest()[:32]
