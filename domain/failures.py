"""The failure counter: a config that fails 10 times in a row switches itself off.

Each finished piece of work of a config (an integration run, or an inbound event of a
source) that ends in an error adds 1 to the config's ``consecutive_errors``, atomically in
the database; one that succeeds sets it back to 0. Work still waiting for a retry is not
counted yet. The failure that brings the count to the threshold disables the config in one
conditional update, so however many workers fail at once exactly one wins: it logs the
``*.disabled`` event, whose processing emails the config's chosen users.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, update

from domain.eventlog import append_internal
from domain.integrations.configs import IntegrationConfig
from domain.sources import Source

FAILURE_THRESHOLD = 10

Countable = type[Source] | type[IntegrationConfig]

DISABLED_EVENT = {Source: "source.disabled", IntegrationConfig: "integration.disabled.error"}


def count_failure(
    session: Session,
    model: Countable,
    config_id: str,
    *,
    now: datetime,
    caused_by: str | None = None,
    threshold: int = FAILURE_THRESHOLD,
) -> bool:
    """Add one failure. Returns True when this failure disabled the config."""
    table = sa.inspect(model).local_table
    count = session.execute(
        sa.update(table)
        .where(table.c.id == config_id)
        .values(consecutive_errors=table.c.consecutive_errors + 1)
        .returning(table.c.consecutive_errors, table.c.org_id)
    ).first()
    if count is None or count[0] < threshold:
        return False
    reason = f"disabled automatically after {count[0]} successive errors"
    # Session.exec types an UPDATE's result as CursorResult (rowcount); execute() cannot.
    won = session.exec(
        sa.update(table)
        .where(table.c.id == config_id, table.c.enabled.is_(True))
        .values(enabled=False, disabled_at=now, disabled_reason=reason)
    )
    if won.rowcount != 1:
        return False
    key = "source_id" if model is Source else "config_id"
    append_internal(
        session,
        org_id=count[1],
        type=DISABLED_EVENT[model],
        payload={key: config_id, "consecutive_errors": count[0], "reason": reason},
        caused_by=caused_by,
    )
    return True


def count_success(session: Session, model: Countable, config_id: str) -> None:
    """A success ends the streak. Writes nothing when there was no streak, so busy
    sources do not contend on their row."""
    session.exec(
        update(model)
        .where(col(model.id) == config_id, col(model.consecutive_errors) > 0)
        .values(consecutive_errors=0)
    )
