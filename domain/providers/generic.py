"""The Standard Webhooks scheme (standardwebhooks.com).

Signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature header holds
space-separated ``v1,<base64 HMAC-SHA256>`` entries (several during a key rotation); the
secret is ``whsec_`` followed by base64 key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidInput, SignatureError
from domain.providers.base import Envelope, ascii_bytes, iso_time, signature_timestamp, unix_time

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def decode_secret(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("secret must be 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise InvalidInput("secret must hold at least 16 bytes of key")
    return key


def generate_secret() -> str:
    """A new ``whsec_`` secret: 24 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender computes with one secret (outbound
    webhooks sign with it: ``domain/webhooks/signing.py``)."""
    # surrogatepass: an id that is not valid Unicode still signs (and then fails to match)
    content = f"{msg_id}.{timestamp}.".encode("utf-8", "surrogatepass") + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class GenericProvider:
    name = "generic"
    kept_headers: tuple[str, ...] = (
        "content-type",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
    )
    redacted_headers: tuple[str, ...] = ("webhook-signature",)

    def generate_secret(self) -> str:
        return generate_secret()

    def check_secret(self, secret: str) -> None:
        decode_secret(secret)

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not msg_id or not timestamp or not signatures:
            raise SignatureError(
                "missing_signature",
                "webhook-id, webhook-timestamp and webhook-signature headers are required",
            )
        sent_at = signature_timestamp(timestamp, "webhook-timestamp")
        if abs(now - sent_at) > tolerance:
            raise SignatureError(
                "stale_timestamp", f"webhook-timestamp is more than {tolerance}s from now"
            )
        expected = sign(secret, msg_id, sent_at, body).split(",", 1)[1].encode()
        matched = False
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            # Compare every candidate so timing does not reveal which one matched.
            given = ascii_bytes(value)
            if version == "v1" and given is not None and hmac.compare_digest(given, expected):
                matched = True
        if not matched:
            raise SignatureError("bad_signature", "no webhook-signature matches the payload")

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope:
        event_type = payload.get("type") if isinstance(payload, dict) else None
        occurred = iso_time(payload.get("timestamp") if isinstance(payload, dict) else None)
        if occurred is None:
            # verified and within the tolerance by now; malformed here means not verified
            try:
                sent_at = signature_timestamp(headers.get("webhook-timestamp"), "")
            except SignatureError:
                sent_at = None
            occurred = unix_time(sent_at, "webhook-timestamp")
        return Envelope(
            external_id=headers.get("webhook-id"),
            type=event_type if isinstance(event_type, str) and event_type else "unknown",
            occurred_at=occurred,
        )
