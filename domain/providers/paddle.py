"""Paddle Billing webhooks: ``Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256 of
"ts:body">`` with the notification destination's secret key; several ``h1`` may be present
while a secret rotates; the timestamp must be within the tolerance.

Event JSON: ``event_id``, ``event_type``, ``occurred_at`` (RFC 3339), ``data``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domain.errors import InvalidInput, SignatureError
from domain.providers.base import Envelope, ascii_bytes, iso_time, signature_timestamp


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Paddle-Signature`` value Paddle would send."""
    digest = hmac.new(secret.encode(), f"{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return f"ts={timestamp};h1={digest}"


def parse_time(value: Any) -> datetime | None:
    return iso_time(value)


class PaddleProvider:
    name = "paddle"
    kept_headers: tuple[str, ...] = ("content-type", "user-agent")
    redacted_headers: tuple[str, ...] = ("paddle-signature",)

    def generate_secret(self) -> str:
        return "pdl_ntfset_" + secrets.token_hex(24)

    def check_secret(self, secret: str) -> None:
        if len(secret) < 16:
            raise InvalidInput("secret must be the notification destination's secret key")

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        header = headers.get("paddle-signature")
        if not header:
            raise SignatureError("missing_signature", "the Paddle-Signature header is required")
        timestamp, candidates = None, []
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "ts":
                timestamp = value
            elif key == "h1":
                candidates.append(value)
        if timestamp is None or not candidates:
            raise SignatureError("missing_signature", "Paddle-Signature needs ts= and h1=")
        sent_at = signature_timestamp(timestamp, "Paddle-Signature")
        if abs(now - sent_at) > tolerance:
            raise SignatureError(
                "stale_timestamp", f"the timestamp is more than {tolerance}s from now"
            )
        expected = sign(secret, sent_at, body).split("h1=", 1)[1].encode()
        matched = False
        for candidate in candidates:
            given = ascii_bytes(candidate)
            # Compare every candidate so timing does not reveal which one matched.
            if given is not None and hmac.compare_digest(given, expected):
                matched = True
        if not matched:
            raise SignatureError("bad_signature", "no h1 signature matches the payload")

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope:
        data = payload if isinstance(payload, dict) else {}
        return Envelope(
            external_id=str(data["event_id"]) if data.get("event_id") else None,
            type=str(data.get("event_type") or "unknown"),
            occurred_at=parse_time(data.get("occurred_at")),
        )
