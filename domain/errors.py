"""Errors are types: the retry policy reads the class, never the message.

``TransientError``: worth trying again later (network, timeout, 429, 5xx, lock timeout);
may carry ``retry_after`` seconds from the other side. ``WaitForTurn``, a transient error
that is no failure at all: a shared rate limit has no room yet, so the retry uses no
attempt. ``PermanentError``: will fail the same way every time until something is fixed
(validation, missing mapping, 4xx); the event goes straight to dead letters.
"""

from __future__ import annotations


class MeterbridgeError(Exception):
    """Base of every error meterbridge raises on purpose."""


class TransientError(MeterbridgeError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WaitForTurn(TransientError):
    """A rate limit shared by every worker has no room for this call for ``retry_after``
    seconds. Nothing failed: the retry uses no attempt (``max_attempts`` can never run out
    by waiting) and counts toward no failure counter; the attempt history shows the wait."""

    retry_after: float

    def __init__(self, *, retry_after: float, key: str = "") -> None:
        retry_after = max(0.0, retry_after)
        super().__init__(
            f"waiting {retry_after:.3f}s for a turn under the rate limit"
            + (f" of {key}" if key else ""),
            retry_after=retry_after,
        )
        self.key = key


class PermanentError(MeterbridgeError):
    pass


class NotFound(MeterbridgeError):
    """The object does not exist in the caller's organisation."""


class Conflict(MeterbridgeError):
    """The request is well formed but the object's state forbids it."""


class InvalidInput(MeterbridgeError):
    """A caller's request is malformed; the message says why, ``field`` which part."""

    def __init__(
        self, message: str, *, field: str | None = None, position: int | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        #: Where in the field's text the problem is (0-based), e.g. in an expression.
        self.position = position


class SignatureError(MeterbridgeError):
    """A webhook's signature is missing, wrong, or its timestamp is outside the tolerance."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
