"""Dependencies the admin routes need, as named types."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from domain.db import transaction
from domain.organisations import org_for_api_key
from domain.storable import unstorable
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


def _unstorable(field: str, text: str) -> ApiError | None:
    reason = unstorable(text)
    if reason is None:
        return None
    return ApiError(
        422,
        "validation_error",
        f"{field}: text {reason}",
        details=[{"field": field, "reason": f"text {reason}"}],
    )


def _first_unstorable(root: str, value: Any) -> ApiError | None:
    pending: deque[tuple[str, Any]] = deque([(root, value)])
    while pending:
        field, item = pending.popleft()
        if isinstance(item, str):
            error = _unstorable(field, item)
            if error:
                return error
        elif isinstance(item, dict):
            for key, inner in item.items():
                error = _unstorable(field, key)
                if error:
                    return error
                pending.append((f"{field}.{key}", inner))
        elif isinstance(item, list):
            pending.extend((f"{field}.{index}", inner) for index, inner in enumerate(item))
    return None


async def refuse_unstorable_text(request: Request) -> None:
    """Every admin route: text holding NUL or a lone surrogate, in a path id, a query
    parameter or anywhere in a JSON body, is a 422 naming the field, before anything
    reaches the database."""
    texts: list[tuple[str, Any]] = [(f"path.{k}", v) for k, v in request.path_params.items()]
    for name, value in request.query_params.multi_items():
        texts += [("query", name), (f"query.{name}", value)]
    # FastAPI keeps the body it parsed as JSON here; a body it did not parse (no JSON
    # content type) is refused by the body's own validation.
    body = getattr(request, "_json", None)
    if body is not None:
        texts.append(("body", body))
    for field, value in texts:
        error = _first_unstorable(field, value)
        if error:
            raise error
