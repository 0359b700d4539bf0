from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from domain.clock import utcnow
from domain.deadletters import DeadLetterFilter, list_dead, replay_dead_letters
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import EventPublic, IsoDatetime, ReplayRequest, ReplayResult
from receiver.errors import ApiError

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])


@router.get("", response_model=list[EventPublic])
def list_(
    org_id: OrgId,
    session: SessionDep,
    source_id: str | None = None,
    type: str | None = None,
    error_contains: str | None = None,
    since: IsoDatetime | None = None,
    until: IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventPublic]:
    filt = DeadLetterFilter(
        org_id,
        source_id=source_id,
        type=type,
        error_contains=error_contains,
        since=since,
        until=until,
    )
    return [EventPublic.model_validate(e) for e in list_dead(session, filt, limit=limit)]


@router.post("/replay", response_model=ReplayResult)
def replay_(body: ReplayRequest, org_id: OrgId, intake: IntakeDep) -> ReplayResult:
    """Move matching dead letters back to pending and queue them. Replaying an event that
    is no longer dead does nothing, so a repeated request starts each event once."""
    filt = DeadLetterFilter(
        org_id,
        event_ids=tuple(body.event_ids),
        source_id=body.source_id,
        type=body.type,
        error_contains=body.error_contains,
        since=body.since,
        until=body.until,
    )
    if filt == DeadLetterFilter(org_id) and not body.all:
        raise ApiError(
            422,
            "validation_error",
            "name event_ids or a filter, or set all=true to replay every dead letter",
        )
    outcome = replay_dead_letters(
        intake.engine,
        filt,
        intake.publisher.publish_many,
        now=utcnow(),
        grace_seconds=intake.settings.outbox_grace_seconds,
        dry_run=body.dry_run,
    )
    replayed = [event.id for event in outcome.would_replay] if body.dry_run else outcome.replayed
    return ReplayResult(dry_run=body.dry_run, matched=outcome.matched, replayed=replayed)
