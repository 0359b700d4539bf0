from __future__ import annotations

from fastapi import APIRouter

from domain.clock import utcnow
from domain.secrets import secret_box
from domain.sources import (
    create_source,
    disable_source,
    enable_and_release,
    get_source,
    list_sources,
)
from domain.users import check_users
from receiver.api.answers import answers
from receiver.api.deps import IntakeDep, OrgId, SessionDep
from receiver.api.schemas import SourceCreate, SourceCreated, SourcePublic, SourceUpdate

router = APIRouter(prefix="/sources", tags=["sources"])


def _public(source: object) -> SourcePublic:
    public = SourcePublic.model_validate(source)
    public.webhook_path = f"/webhooks/{public.id}"
    return public


@router.get("", response_model=list[SourcePublic])
def list_(org_id: OrgId, session: SessionDep) -> list[SourcePublic]:
    return [_public(source) for source in list_sources(session, org_id)]


@router.post("", response_model=SourceCreated, status_code=201)
def create(
    body: SourceCreate, org_id: OrgId, session: SessionDep, intake: IntakeDep
) -> SourceCreated:
    check_users(session, org_id, body.disabled_notification_user_ids)
    source, secret = create_source(
        session,
        secret_box(intake.settings),
        org_id=org_id,
        name=body.name,
        provider=body.provider,
        secret=body.secret,
        notify_user_ids=body.disabled_notification_user_ids,
    )
    return SourceCreated(**_public(source).model_dump(), secret=secret)


@router.get("/{source_id}", response_model=SourcePublic, responses=answers(404))
def show(source_id: str, org_id: OrgId, session: SessionDep) -> SourcePublic:
    return _public(get_source(session, org_id, source_id))


@router.patch("/{source_id}", response_model=SourcePublic, responses=answers(404))
def update(source_id: str, body: SourceUpdate, org_id: OrgId, session: SessionDep) -> SourcePublic:
    source = get_source(session, org_id, source_id)
    if body.name is not None:
        source.name = body.name
    if body.disabled_notification_user_ids is not None:
        check_users(session, org_id, body.disabled_notification_user_ids)
        source.disabled_notification_user_ids = body.disabled_notification_user_ids
    session.add(source)
    return _public(source)


@router.post("/{source_id}/disable", response_model=SourcePublic, responses=answers(404))
def disable(source_id: str, org_id: OrgId, session: SessionDep) -> SourcePublic:
    source = get_source(session, org_id, source_id)
    disable_source(session, source, "disabled by a user")
    return _public(source)


@router.post("/{source_id}/enable", response_model=SourcePublic, responses=answers(404))
def enable(source_id: str, org_id: OrgId, intake: IntakeDep) -> SourcePublic:
    """Enable the source and release its held events, in the order they were received."""
    enabled = enable_and_release(
        intake.engine,
        lambda session: get_source(session, org_id, source_id),
        intake.publisher.publish_many,
        now=utcnow(),
        grace_seconds=intake.settings.outbox_grace_seconds,
    )
    return _public(enabled.source)
