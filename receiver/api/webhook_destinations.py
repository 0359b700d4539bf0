from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from domain.errors import InvalidInput, MeterbridgeError
from domain.secrets import secret_box
from domain.settings import Settings
from domain.webhooks.destinations import (
    MAX_OVERLAP,
    WithSecret,
    create_destination,
    get_destination,
    list_destinations,
    rotate_secret,
    update_destination,
)
from domain.webhooks.messages import MessageFilter, MessageStatus, list_attempts, list_messages
from domain.webhooks.operations import delete_destination, enable_and_release, replay, send_test
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import IsoDatetime, Strict
from receiver.errors import ApiError
from workers.webhooks.sender import check_url

router = APIRouter(prefix="/webhook-destinations", tags=["webhook destinations"])

IdList = list[str]
URL = (
    "https only; plain http only to networks in METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS. The "
    "host is resolved now and at every send: an inside address (loopback, private, "
    "link-local, CGNAT, ...) is refused unless those networks allow it."
)


class DestinationCreate(Strict):
    url: str = Field(min_length=1, max_length=2000, description=URL)
    description: str = Field("", max_length=1000)
    disabled_notification_user_ids: IdList = Field(
        default_factory=list, max_length=1000, description="Emailed when it is disabled."
    )


class DestinationUpdate(Strict):
    url: str | None = Field(None, min_length=1, max_length=2000, description=URL)
    description: str | None = Field(None, max_length=1000)
    disabled_notification_user_ids: IdList | None = Field(None, max_length=1000)


class DestinationPublic(BaseModel):
    """A destination as the API shows it: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str
    disabled_notification_user_ids: IdList
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_errors: int
    previous_secret_until: datetime | None = Field(
        description="Until when the secret rotated out still signs beside the current one."
    )
    created_at: datetime
    updated_at: datetime


class DestinationWithSecret(DestinationPublic):
    secret: str = Field(description="The whsec_ signing secret: shown this once only.")


class RotateRequest(Strict):
    overlap_hours: float = Field(
        24,
        ge=0,
        le=MAX_OVERLAP.total_seconds() / 3600,
        description="How long the current secret keeps signing beside the new one.",
    )


class MessagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    destination_id: str
    firing_id: str | None
    event_id: str | None
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None


class AttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message_id: str
    number: int
    attempted_at: datetime = Field(description="When the attempt began.")
    result: str
    status_code: int | None
    duration_ms: float | None
    answer: str = Field(description="The first 1 KiB of the answer's body.")
    error: str | None
    address: str | None


class ReplayRequest(Strict):
    message_ids: IdList | None = Field(None, max_length=10_000)
    event_type: str | None = None
    since: IsoDatetime | None = None
    until: IsoDatetime | None = None
    all: bool = Field(False, description="Replay every failed message of the destination.")
    dry_run: bool = Field(False, description="Only say which messages would be sent again.")


class ReplayResult(BaseModel):
    dry_run: bool
    message_ids: IdList = Field(description="The failed messages sent again (or that would be).")


class TestRequest(Strict):
    event_type: str = Field(description="An event type of the catalogue; a sample is sent.")


class EnableResult(DestinationPublic):
    released: int = Field(description="Messages held while it was disabled, now sent.")


def _url_check(settings: Settings) -> Callable[[str], object]:
    def check(url: str) -> object:
        try:
            return check_url(url, allowed_networks=settings.webhook_allowed_networks)
        except MeterbridgeError as refused:  # refused, or the host does not resolve
            raise InvalidInput(str(refused), field="url") from None

    return check


def _with_secret(created: WithSecret) -> DestinationWithSecret:
    public = DestinationPublic.model_validate(created.destination)
    return DestinationWithSecret(**public.model_dump(), secret=created.secret)


@router.get("", response_model=list[DestinationPublic])
def list_(org_id: OrgId, session: SessionDep) -> list[DestinationPublic]:
    return [DestinationPublic.model_validate(d) for d in list_destinations(session, org_id)]


@router.post("", response_model=DestinationWithSecret, status_code=201)
def create(
    body: DestinationCreate, org_id: OrgId, session: SessionDep, intake: IntakeDep
) -> DestinationWithSecret:
    """Create a destination. The answer holds its signing secret, once."""
    created = create_destination(
        session,
        secret_box(intake.settings),
        org_id,
        url=body.url,
        description=body.description,
        user_ids=body.disabled_notification_user_ids,
        check_url=_url_check(intake.settings),
    )
    return _with_secret(created)


@router.get("/{destination_id}", response_model=DestinationPublic, responses=answers(404))
def show(destination_id: str, org_id: OrgId, session: SessionDep) -> DestinationPublic:
    return DestinationPublic.model_validate(get_destination(session, org_id, destination_id))


@router.patch("/{destination_id}", response_model=DestinationPublic, responses=answers(404))
def update(
    destination_id: str,
    body: DestinationUpdate,
    org_id: OrgId,
    session: SessionDep,
    intake: IntakeDep,
) -> DestinationPublic:
    destination = update_destination(
        session,
        org_id,
        destination_id,
        check_url=_url_check(intake.settings),
        url=body.url,
        description=body.description,
        user_ids=body.disabled_notification_user_ids,
    )
    return DestinationPublic.model_validate(destination)


@router.delete("/{destination_id}", status_code=204, responses=answers(404))
def delete(destination_id: str, org_id: OrgId, session: SessionDep) -> None:
    """Delete it with its messages and attempts; rules stop sending to it."""
    delete_destination(session, org_id, destination_id)


@router.post(
    "/{destination_id}/rotate-secret",
    response_model=DestinationWithSecret,
    responses=answers(404),
)
def rotate(
    destination_id: str,
    body: RotateRequest,
    org_id: OrgId,
    session: SessionDep,
    intake: IntakeDep,
) -> DestinationWithSecret:
    """A new secret, answered once; the current one keeps signing beside it for the
    overlap (default 24 h)."""
    rotated = rotate_secret(
        session,
        secret_box(intake.settings),
        org_id,
        destination_id,
        overlap=timedelta(hours=body.overlap_hours),
    )
    return _with_secret(rotated)


@router.post("/{destination_id}/enable", response_model=EnableResult, responses=answers(404))
def enable(destination_id: str, org_id: OrgId, intake: IntakeDep) -> EnableResult:
    """Enable it, start its failure count again, and send what was held meanwhile."""
    enabled = enable_and_release(
        intake.engine, org_id, destination_id, intake.publisher.publish_many
    )
    public = DestinationPublic.model_validate(enabled.destination)
    return EnableResult(**public.model_dump(), released=len(enabled.released))


@router.get(
    "/{destination_id}/messages", response_model=list[MessagePublic], responses=answers(404)
)
def messages(
    destination_id: str,
    org_id: OrgId,
    session: SessionDep,
    status: MessageStatus | None = None,
    event_type: str | None = None,
    before: str | None = Query(None, description="A message id: the page before it."),
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[MessagePublic]:
    get_destination(session, org_id, destination_id)
    filt = MessageFilter(
        org_id, destination_id, status=status, event_type=event_type, before=before
    )
    return [MessagePublic.model_validate(m) for m in list_messages(session, filt, limit=limit)]


@router.get(
    "/{destination_id}/attempts", response_model=list[AttemptPublic], responses=answers(404)
)
def attempts(
    destination_id: str,
    org_id: OrgId,
    session: SessionDep,
    message_id: str | None = None,
    before: int | None = Query(None, description="An attempt id: the page before it."),
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[AttemptPublic]:
    """Every attempt, newest first: time, status, duration, the answer's first 1 KiB."""
    get_destination(session, org_id, destination_id)
    found = list_attempts(
        session, org_id, destination_id, message_id=message_id, before=before, limit=limit
    )
    return [AttemptPublic.model_validate(a) for a in found]


@router.post("/{destination_id}/replay", response_model=ReplayResult, responses=answers(404))
def replay_(
    destination_id: str, body: ReplayRequest, org_id: OrgId, intake: IntakeDep
) -> ReplayResult:
    """Send failed messages again: the named ones, those a filter selects, or all."""
    filt = MessageFilter(
        org_id,
        destination_id,
        event_type=body.event_type,
        since=body.since,
        until=body.until,
        message_ids=body.message_ids,
    )
    if filt == MessageFilter(org_id, destination_id) and not body.all:
        raise ApiError(
            422,
            "validation_error",
            "name message_ids or a filter, or set all=true to replay every failed message",
        )
    replayed = replay(
        intake.engine, filt, dry_run=body.dry_run, publish=intake.publisher.publish_many
    )
    return ReplayResult(dry_run=replayed.dry_run, message_ids=replayed.message_ids)


@router.post(
    "/{destination_id}/test",
    response_model=MessagePublic,
    status_code=202,
    responses=answers(404),
)
def test(destination_id: str, body: TestRequest, org_id: OrgId, intake: IntakeDep) -> MessagePublic:
    """Send a sample of an event type, signed and retried like any message; its
    attempts (GET …/attempts?message_id=) show how the receiver answered."""
    message = send_test(
        intake.engine, org_id, destination_id, body.event_type, intake.publisher.publish_many
    )
    return MessagePublic.model_validate(message)
