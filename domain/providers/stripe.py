"""Stripe webhooks: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` with
the endpoint secret (``whsec_…``, used as is) as the key; several ``v1`` may be present
while a secret rolls; the timestamp must be within the tolerance (300 s by default).

Event JSON: ``id``, ``type``, ``created`` (unix seconds), ``data.object``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidInput, SignatureError
from domain.providers.base import Envelope, ascii_bytes, signature_timestamp, unix_time


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Stripe-Signature`` value Stripe would send."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class StripeProvider:
    name = "stripe"
    kept_headers: tuple[str, ...] = ("content-type", "user-agent")
    redacted_headers: tuple[str, ...] = ("stripe-signature",)

    def generate_secret(self) -> str:
        return "whsec_" + secrets.token_hex(24)

    def check_secret(self, secret: str) -> None:
        if not secret.startswith("whsec_") or len(secret) < 16:
            raise InvalidInput("secret must be the endpoint's signing secret, 'whsec_…'")

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        header = headers.get("stripe-signature")
        if not header:
            raise SignatureError("missing_signature", "the Stripe-Signature header is required")
        timestamp, candidates = None, []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                timestamp = value
            elif key == "v1":
                candidates.append(value)
        if timestamp is None or not candidates:
            raise SignatureError("missing_signature", "Stripe-Signature needs t= and v1=")
        sent_at = signature_timestamp(timestamp, "Stripe-Signature")
        if abs(now - sent_at) > tolerance:
            raise SignatureError(
                "stale_timestamp", f"the timestamp is more than {tolerance}s from now"
            )
        expected = sign(secret, sent_at, body).split("v1=", 1)[1].encode()
        matched = False
        for candidate in candidates:
            given = ascii_bytes(candidate)
            # Compare every candidate so timing does not reveal which one matched.
            if given is not None and hmac.compare_digest(given, expected):
                matched = True
        if not matched:
            raise SignatureError("bad_signature", "no v1 signature matches the payload")

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope:
        data = payload if isinstance(payload, dict) else {}
        return Envelope(
            external_id=str(data["id"]) if data.get("id") else None,
            type=str(data.get("type") or "unknown"),
            occurred_at=unix_time(data.get("created"), "created"),
        )
