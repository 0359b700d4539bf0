"""Chargebee webhooks: HTTP basic auth configured on the webhook (Chargebee's own webhook
authentication). The source's secret is ``username:password``. Chargebee signs nothing and
sends no timestamp, so there is no tolerance window; duplicates are caught by event id.

Event JSON: ``id``, ``occurred_at`` (unix seconds), ``event_type``, ``api_version``,
``content.{customer, subscription}``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidInput, SignatureError
from domain.providers.base import Envelope, unix_time


class ChargebeeProvider:
    name = "chargebee"
    kept_headers: tuple[str, ...] = ("content-type", "user-agent")
    redacted_headers: tuple[str, ...] = ("authorization",)

    def generate_secret(self) -> str:
        return f"chargebee:{secrets.token_urlsafe(24)}"

    def check_secret(self, secret: str) -> None:
        user, sep, password = secret.partition(":")
        if not sep or not user or len(password) < 8:
            raise InvalidInput("secret must be 'username:password' (password of 8+ characters)")

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        header = headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise SignatureError("missing_signature", "HTTP basic authentication is required")
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("bad_signature", "the Authorization header is malformed") from None
        if not hmac.compare_digest(given, secret.encode()):
            raise SignatureError("bad_signature", "the basic authentication credentials are wrong")

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope:
        data = payload if isinstance(payload, dict) else {}
        return Envelope(
            external_id=str(data["id"]) if data.get("id") else None,
            type=str(data.get("event_type") or "unknown"),
            occurred_at=unix_time(data.get("occurred_at"), "occurred_at"),
        )
