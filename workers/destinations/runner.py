"""Perform one integration run, whatever its destination: prepare it, take the bill's
turn, and hand it to the destination's performer."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from domain.db import transaction
from domain.integrations.runs import RunResult, acquire_bill, prepare
from domain.integrations.sync import BillSync
from domain.secrets import SecretBox
from domain.settings import Settings
from workers.destinations.registry import PERFORMERS


def perform_run(
    engine: Engine, box: SecretBox, settings: Settings, run_id: str, attempt: int
) -> RunResult | None:
    """None when there is nothing to send: the config is disabled (the run is held), or
    the run is already COMPLETE."""
    with transaction(engine) as session:
        prepared = prepare(session, box, run_id, attempt)
    if prepared is None:
        return None
    with transaction(engine) as session:
        sync = acquire_bill(session, prepared, settings.lease_seconds)
        state = BillSync.model_validate(sync.model_dump())
    return PERFORMERS[prepared.destination](engine, settings, prepared, state)
