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
from domain.webhooks.destinations import WebhookDestination

FAILURE_THRESHOLD = 10

Countable = type[Source] | type[IntegrationConfig] | type[WebhookDestination]

#: The event a disabled config logs, and the payload key naming it.
DISABLED_EVENT: dict[Countable, tuple[str, str]] = {
    Source: ("source.disabled", "source_id"),
    IntegrationConfig: ("integration.disabled.error", "config_id"),
    WebhookDestination: ("webhook_destination.disabled", "destination_id"),
}


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
    return disable(session, model, config_id, reason=reason, now=now, caused_by=caused_by)


def disable(
    session: Session,
    model: Countable,
    config_id: str,
    *,
    reason: str,
    now: datetime,
    caused_by: str | None = None,
) -> bool:
    """Switch the config off at once (the counter's last failure, or a webhook
    destination's 410) and log its ``*.disabled`` event. One conditional update: of several
    workers disabling it together exactly one wins and logs. Returns whether this one won."""
    table = sa.inspect(model).local_table
    # Session.exec types an UPDATE's result as CursorResult (rowcount); execute() cannot.
    won = session.execute(
        sa.update(table)
        .where(table.c.id == config_id, table.c.enabled.is_(True))
        .values(enabled=False, disabled_at=now, disabled_reason=reason[:500])
        .returning(table.c.consecutive_errors, table.c.org_id)
    ).first()
    if won is None:
        return False
    event_type, key = DISABLED_EVENT[model]
    append_internal(
        session,
        org_id=won[1],
        type=event_type,
        payload={key: config_id, "consecutive_errors": won[0], "reason": reason},
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
