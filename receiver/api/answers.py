"""What the admin API answers besides success: one error shape, documented once.

Every admin route answers 401 (no key, or an unknown or revoked one) and 422 (a field is
invalid, including text holding NUL or a lone surrogate); the router documents those for
all of them. A route that can also answer 404 (an id that is missing or another
organisation's) or 409 (the object's state or a uniqueness rule forbids it) names those
codes with ``answers(...)``, which picks from the same mapping; a route that reads a body
also answers 400 when the body cannot be decoded, added by ``document_body_errors``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str = Field(description="Where: `body.<path>`, `query.<name>` or `path.<name>`.")
    reason: str


class Error(BaseModel):
    """Every error answer of the receiver."""

    code: str = Field(description="Machine-readable, e.g. `validation_error`, `not_found`.")
    message: str = Field(description="For a person; a field error starts with the field.")
    errors: list[FieldError] | None = Field(None, description="Each invalid field (422).")


_DESCRIPTIONS = {
    400: "The body could not be read as JSON text, e.g. it is not UTF-8 (`http_error`).",
    401: "No API key, or one that is unknown or revoked (`unauthenticated`).",
    404: "No such object in the key's organisation (`not_found`); another organisation's "
    "objects answer exactly like missing ones.",
    409: "The object's state or a uniqueness rule forbids the request (`conflict`).",
    422: "A field is invalid (`validation_error`), named in `message` and `errors`; text "
    "holding NUL (\\u0000) or a lone surrogate is invalid wherever it is sent.",
}

ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": description}
    for status, description in _DESCRIPTIONS.items()
}

#: What every admin route can answer.
EVERY_ROUTE = (401, 422)


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, beyond those of every route."""
    return {status: ANSWERS[status] for status in statuses}


def document_body_errors(router: APIRouter) -> None:
    """Each route of ``router`` that reads a body documents 400: FastAPI answers it for a
    body sent as JSON that is not text (invalid JSON text is a 422)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            route.responses = {**answers(400), **route.responses}


class JSONAnswer(JSONResponse):
    """JSON as usual; a value holding a lone surrogate (which UTF-8 cannot encode: an
    event's payload is kept as it was sent) is written with every non-ASCII character
    escaped, so the answer is the same JSON instead of an error."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(
                content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
            ).encode("ascii")
