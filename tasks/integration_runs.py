"""The unit of work behind ``integration.run.requested``: perform one integration run.

Registered as an event handler, so a run gets the spine's leases, retries with backoff,
attempt history and dead letters; ``domain.integrations.runs.record_run_failure`` records
what a failed attempt means for the run.
"""

from __future__ import annotations

from sqlmodel import Session

from domain.eventlog import INTERNAL_PROVIDER
from domain.events import Event
from domain.handlers import InboundEvent, registry
from domain.integrations.runs import RUN_REQUESTED, RunStatus, complete
from workers.destinations.runner import perform_run
from workers.runtime import runtime


@registry.register(INTERNAL_PROVIDER, RUN_REQUESTED, name="integrations.perform_run", isolated=True)
def perform(session: Session, event: InboundEvent) -> None:
    rt = runtime()
    row = session.get(Event, event.id)
    attempt = row.attempts if row else 1
    run_id = event.payload["run_id"]
    result = perform_run(rt.engine, rt.box, rt.settings, run_id, attempt)
    if result is None:
        return  # disabled (prepare() left the run DISABLED, held), or already COMPLETE
    complete(
        session,
        run_id,
        invoice_id=result.invoice_id,
        items_added=result.items_added,
        items_removed=result.items_removed,
        bill_version=result.bill_version,
    )


__all__ = ["RunStatus", "perform"]
