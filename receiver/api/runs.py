from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from domain.integrations.runs import RunFilter, RunStatus, get_run, list_runs
from receiver.api.answers import answers
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import IsoDatetime

router = APIRouter(prefix="/integration-runs", tags=["integration runs"])


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    config_id: str
    bill_id: str
    trigger: str
    trigger_event_id: str
    request_event_id: str | None
    status: str
    attempts: int
    bill_version: int | None
    invoice_id: str | None
    items_added: int
    items_removed: int
    error_type: str | None
    error_message: str | None
    error_event_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.get("", response_model=list[RunPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    config_id: str | None = None,
    status: RunStatus | None = None,
    bill_id: str | None = None,
    since: IsoDatetime | None = None,
    until: IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunPublic]:
    filt = RunFilter(
        org_id, config_id=config_id, status=status, bill_id=bill_id, since=since, until=until
    )
    return [RunPublic.model_validate(run) for run in list_runs(session, filt, limit=limit)]


@router.get("/{run_id}", response_model=RunPublic, responses=answers(404))
def show(run_id: str, org_id: OrgId, session: SessionDep) -> RunPublic:
    return RunPublic.model_validate(get_run(session, org_id, run_id))
