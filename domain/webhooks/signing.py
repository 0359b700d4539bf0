"""Signing outbound webhooks the Standard Webhooks way (standardwebhooks.com).

Every message carries ``webhook-id`` (the message's id: the same on every attempt, so the
receiver can drop a repeat), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` for each
of the destination's current secrets, space-separated. While a secret is rotated both the
new and the old secret sign, so a receiver holding either one verifies the message.

The scheme is written once: secret decoding and the HMAC are the inbound generic
provider's (``domain/providers/generic.py``), which verifies the same signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.errors import InvalidInput
from domain.providers.generic import decode_secret, generate_secret, sign

__all__ = ["check_secret", "generate_secret", "signature_headers"]


def check_secret(secret: str) -> None:
    """``InvalidInput`` unless ``secret`` is ``whsec_`` and base64 of at least 16 bytes."""
    if not secret.startswith("whsec_"):
        raise InvalidInput("secret must be 'whsec_' followed by base64")
    decode_secret(secret)


def signature_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of a message signed with every one of
    ``secrets`` (the newest first, by convention; receivers accept any match)."""
    if not secrets:
        raise InvalidInput("a message needs at least one signing secret")
    if not msg_id or any(c.isspace() for c in msg_id):
        raise InvalidInput("a message id must be non-empty, without spaces")
    for secret in secrets:
        check_secret(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
