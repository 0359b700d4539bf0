"""``GET /oauth/{destination}/callback``: where a provider sends a person's browser after
consent. No API key: the single-use ``state`` says which credential and organisation the
consent is for (``workers.connections.consent``). Answers a short page for the person."""

from __future__ import annotations

from html import escape

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from domain.errors import InvalidInput, TransientError
from domain.secrets import secret_box
from receiver.intake import Intake
from workers.connections.consent import complete_authorization
from workers.connections.oauth2 import TokenRefused

router = APIRouter(tags=["oauth"])
log = structlog.get_logger(__name__)


@router.get("/oauth/{destination}/callback", response_class=HTMLResponse)
def callback(destination: str, request: Request) -> HTMLResponse:
    intake: Intake = request.app.state.intake
    params = dict(request.query_params)
    try:
        credential = complete_authorization(
            intake.engine, secret_box(intake.settings), intake.settings, destination, params
        )
    except InvalidInput as exc:
        return _page(400, "Not connected", str(exc))
    except TokenRefused as exc:
        return _page(400, "Not connected", f"{exc}. Ask for a new link and try again.")
    except TransientError as exc:
        return _page(502, "Not connected yet", f"{exc}. Ask for a new link and try again.")
    log.info("credential.connected", credential=credential.id, destination=destination)
    tenant = f" ({credential.tenant_id})" if credential.tenant_id else ""
    return _page(
        200,
        "Connected",
        f"meterbridge's credential {credential.name!r} ({credential.id}) is connected to "
        f"{destination}{tenant}. You can close this window.",
    )


def _page(status: int, title: str, message: str) -> HTMLResponse:
    body = (
        f"<!doctype html><meta charset=utf-8><title>meterbridge: {escape(title)}</title>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=status)
