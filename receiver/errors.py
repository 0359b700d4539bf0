"""Every error answer is JSON: a machine-readable ``code`` and a human ``message``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import Conflict, InvalidInput, NotFound


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_response(error: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["errors"] = error.details
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(404, "not_found", str(exc)))


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    details: list[dict[str, Any]] | None = None
    if exc.field:
        details = [{"field": f"body.{exc.field}", "reason": str(exc)}]
        if exc.position is not None:
            details[0]["position"] = exc.position
    message = f"body.{exc.field}: {exc}" if exc.field else str(exc)
    return error_response(ApiError(422, "validation_error", message, details=details))


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(409, "conflict", str(exc)))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if _body_not_sent_as_json(exc):
        return error_response(_not_json_content_type(request))
    details = [
        {"field": ".".join(str(part) for part in error["loc"]), "reason": error["msg"]}
        for error in exc.errors()
    ]
    first = details[0] if details else {"field": "?", "reason": "invalid"}
    message = f"{first['field']}: {first['reason']}"
    return error_response(ApiError(422, "validation_error", message, details=details))


def _body_not_sent_as_json(exc: RequestValidationError) -> bool:
    """FastAPI parses a body as JSON only under a JSON content type; otherwise the model is
    validated against the raw bytes, which fails with a message that hides the cause."""
    return any(
        tuple(error["loc"]) == ("body",) and isinstance(error.get("input"), bytes)
        for error in exc.errors()
    )


def _not_json_content_type(request: Request) -> ApiError:
    sent = request.headers.get("content-type")
    got = f"it was sent as {sent!r}" if sent else "it was sent without a content-type header"
    message = f"send the body as JSON with `content-type: application/json` ({got})"
    details = [{"field": "headers.content-type", "reason": message}]
    return ApiError(422, "validation_error", message, details=details)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(
        ApiError(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
