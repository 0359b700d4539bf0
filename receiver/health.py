"""``/healthz``: the process answers. ``/readyz``: the database and the broker answer."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from sqlalchemy import text

from receiver.errors import ApiError
from receiver.intake import Intake

router = APIRouter(tags=["health"])
#: Served only with METERBRIDGE_RECEIVER_METRICS on (the default).
metrics_router = APIRouter(tags=["health"])


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    intake: Intake = request.app.state.intake
    _require_metrics_token(request, intake.settings.metrics_token)
    body = await asyncio.to_thread(generate_latest, intake.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _require_metrics_token(request: Request, token: SecretStr | None) -> None:
    if token is None:
        return
    expected = f"Bearer {token.get_secret_value()}".encode()
    given = request.headers.get("authorization", "").encode()
    if not hmac.compare_digest(given, expected):
        raise ApiError(401, "unauthorized", "/metrics needs Authorization: Bearer <token>")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    intake: Intake = request.app.state.intake
    database, broker = await asyncio.gather(
        asyncio.to_thread(_database_ok, intake), asyncio.to_thread(_broker_ok, intake)
    )
    checks = {"database": database, "broker": broker}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _database_ok(intake: Intake) -> str:
    try:
        with intake.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _broker_ok(intake: Intake) -> str:
    try:
        with intake.publisher.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
