from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.errors import InvalidInput, SignatureError

#: A signature timestamp is unix seconds in ASCII digits; more digits than this cannot be
#: within any tolerance (10 digits last until 2286), so they are refused unparsed.
MAX_TIMESTAMP_DIGITS = 12
_TIMESTAMP = re.compile(rf"[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}")
#: Event times in unix seconds that a datetime (and the log) can hold: 1970 to 9999.
MAX_EVENT_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class UnacceptableEvent(InvalidInput):
    """A signed webhook the log cannot hold as sent (not JSON, nested too deep, an id too
    long, a NUL, a time out of range). Permanent: the same request is refused every time,
    so intake answers 4xx with ``code`` and the reason, never 5xx."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signature_timestamp(value: str | None, header: str) -> int:
    """The unix seconds of a signature header's timestamp, or ``SignatureError``: only
    ASCII digits count (``str.isdigit`` also accepts ``²``, which ``int`` refuses)."""
    if value is None or not _TIMESTAMP.fullmatch(value):
        raise SignatureError(
            "bad_timestamp",
            f"the {header} timestamp must be unix seconds (at most "
            f"{MAX_TIMESTAMP_DIGITS} ASCII digits)",
        )
    return int(value)


def unix_time(value: Any, field: str) -> datetime | None:
    """An integer event time as a UTC datetime; None when absent or not an integer;
    ``UnacceptableEvent`` when out of the range the log holds."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if not 0 <= value <= MAX_EVENT_SECONDS:
        raise UnacceptableEvent(
            "invalid_event",
            f"{field} {str(value)[:40]} is out of range: event times are unix seconds "
            f"from 0 to {MAX_EVENT_SECONDS} (9999-12-31)",
        )
    return datetime.fromtimestamp(value, UTC)


def iso_time(value: Any) -> datetime | None:
    """An RFC 3339 event time as a UTC datetime; None when absent, unparseable or not
    representable in UTC (year 1 with a positive offset)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def ascii_bytes(value: str) -> bytes | None:
    """A signature candidate as bytes for a constant-time comparison; None when it holds
    anything but ASCII (hex and base64 are ASCII, so it cannot match)."""
    return value.encode() if value.isascii() else None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What intake needs to know of an event before any domain work."""

    external_id: str | None
    type: str
    occurred_at: datetime | None


class Provider(Protocol):
    name: str
    #: Request headers kept with the event (lower case); signature headers are redacted.
    kept_headers: tuple[str, ...]
    redacted_headers: tuple[str, ...]

    def generate_secret(self) -> str: ...

    def check_secret(self, secret: str) -> None:
        """Raise ``InvalidInput`` when the secret cannot be used by this provider."""

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        """Raise ``SignatureError`` unless the request is authentic and fresh."""

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope: ...


def kept_headers(provider: Provider, headers: Mapping[str, str]) -> dict[str, str]:
    kept = {name: headers[name] for name in provider.kept_headers if name in headers}
    for name in provider.redacted_headers:
        if name in headers:
            kept[name] = "[redacted]"
    return kept
