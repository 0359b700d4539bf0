"""Dependencies the admin routes need, as named types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from domain.db import transaction
from domain.organisations import org_for_api_key
from receiver.errors import ApiError
from receiver.intake import Intake

_bearer = HTTPBearer(auto_error=False, description="An API key: `meterbridge api-keys create`")


def get_intake(request: Request) -> Intake:
    return request.app.state.intake


def get_session(intake: Annotated[Intake, Depends(get_intake)]) -> Iterator[Session]:
    with transaction(intake.engine) as session:
        yield session


IntakeDep = Annotated[Intake, Depends(get_intake)]
# Function scope: the transaction commits when the route returns, before the answer is
# sent, so a client never sees success for a write that failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def current_org(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None:
        raise ApiError(
            401,
            "unauthenticated",
            "send `Authorization: Bearer <api key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    org_id = org_for_api_key(session, credentials.credentials)
    if org_id is None:
        raise ApiError(
            401,
            "unauthenticated",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return org_id


OrgId = Annotated[str, Depends(current_org)]
