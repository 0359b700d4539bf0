from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from domain.eventlog import EventFilter, get_event, list_events, mark_actioned
from receiver.api.answers import JSONAnswer, answers
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import AttemptPublic, EventDetail, EventPublic

# JSONAnswer: a payload is kept as sent, and may hold a lone surrogate.
router = APIRouter(prefix="/events", tags=["events"], default_response_class=JSONAnswer)


@router.get("", response_model=list[EventPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    status: str | None = None,
    type: str | None = None,
    source_id: str | None = None,
    before: Annotated[str | None, Query(description="An event id: older events only.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[EventPublic]:
    filt = EventFilter(org_id, status=status, type=type, source_id=source_id, before=before)
    return [EventPublic.model_validate(e) for e in list_events(session, filt, limit=limit)]


@router.get("/{event_id}", response_model=EventDetail, responses=answers(404))
def show(event_id: str, org_id: OrgId, session: SessionDep) -> EventDetail:
    event, attempts = get_event(session, org_id, event_id)
    return EventDetail(
        **EventPublic.model_validate(event).model_dump(),
        headers=event.headers,
        payload=json.loads(event.payload),
        history=[AttemptPublic.model_validate(a) for a in attempts],
    )


@router.post("/{event_id}/action", response_model=EventPublic, responses=answers(404))
def action(event_id: str, org_id: OrgId, session: SessionDep) -> EventPublic:
    """Mark an (error) event as dealt with; marking it again changes nothing."""
    return EventPublic.model_validate(mark_actioned(session, org_id, event_id, by="api"))
