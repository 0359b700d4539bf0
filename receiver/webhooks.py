"""``POST /webhooks/{source_id}``: verify, store durably, publish, answer. No domain work."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from domain.clock import utcnow
from domain.errors import SignatureError
from domain.eventlog import inbound_row, parse_payload
from domain.providers.base import UnacceptableEvent, kept_headers
from receiver.errors import ApiError
from receiver.intake import Intake
from receiver.writer import RowRefused, StoreUnavailable

router = APIRouter(tags=["webhooks"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A repeat of an event already stored: `duplicate` is true."},
    202: {"description": "Stored durably and queued for processing."},
    400: {
        "description": "The body is not JSON (or nests too deep, or holds an over-long "
        "integer), or the event cannot be stored as sent: an id or type too long, a NUL, "
        "a time out of range. The same request is refused every time."
    },
    401: {"description": "Missing or bad signature, or a timestamp out of tolerance."},
    404: {"description": "No such source."},
    413: {"description": "The body is over the size limit."},
    503: {"description": "The store cannot commit now; retry after `Retry-After` seconds."},
}


@router.post("/webhooks/{source_id}", status_code=202, responses=RESPONSES)
async def receive_webhook(source_id: str, request: Request) -> JSONResponse:
    """Accept one webhook. A 2xx is only sent once the event is committed."""
    intake: Intake = request.app.state.intake
    started = time.perf_counter()
    try:
        return await _receive(intake, source_id, request)
    except ApiError as error:
        intake.metrics.rejected.labels(error.code).inc()
        raise
    finally:
        intake.metrics.latency.observe(time.perf_counter() - started)


async def _receive(intake: Intake, source_id: str, request: Request) -> JSONResponse:
    source = await _source(intake, source_id)
    body = await _read_body(request, intake.settings.max_body_bytes)
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        source.provider.verify(
            headers, body, source.secret, time.time(), intake.settings.signature_tolerance_seconds
        )
    except SignatureError as exc:
        raise ApiError(401, exc.code, str(exc)) from None
    try:
        payload = parse_payload(body)
        row = inbound_row(
            org_id=source.org_id,
            source_id=source.id,
            provider=source.provider.name,
            envelope=source.provider.envelope(headers, payload),
            body=body,
            headers=kept_headers(source.provider, headers),
            received_at=utcnow(),
            held=not source.enabled,
        )
    except UnacceptableEvent as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    try:
        stored = await intake.writer.store(row)
    except RowRefused as exc:
        raise ApiError(
            400, "invalid_event", f"the event store refuses this event as sent: {exc}"
        ) from None
    except StoreUnavailable:
        raise ApiError(
            503,
            "store_unavailable",
            "the event store cannot commit now; retry later",
            headers={"Retry-After": "5"},
        ) from None
    if stored.duplicate:
        intake.metrics.duplicates.labels(source.provider.name).inc()
        return JSONResponse({"event_id": stored.event_id, "duplicate": True}, status_code=200)
    if source.enabled:
        intake.publisher.publish(stored.event_id)
    intake.metrics.accepted.labels(source.provider.name).inc()
    return JSONResponse({"event_id": stored.event_id}, status_code=202)


async def _source(intake: Intake, source_id: str) -> Any:
    try:
        source = await intake.sources.get(source_id)
    except Exception:
        raise ApiError(
            503,
            "store_unavailable",
            "the source cannot be looked up now; retry later",
            headers={"Retry-After": "5"},
        ) from None
    if source is None:
        raise ApiError(404, "unknown_source", f"no source {source_id!r}")
    return source


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
    declared = request.headers.get("content-length", "")
    # isascii: str.isdigit also accepts "²", which int() refuses
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
