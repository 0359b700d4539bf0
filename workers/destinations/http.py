"""What every destination's HTTP client reads the same way."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


def try_again_later(status: int) -> bool:
    """A status that says "not now" rather than "no": 408 (the request did not arrive in
    time; a proxy in front of the system says it too) and every 5xx. 429 says "not now"
    too, but each system says how long to wait, so each client reads it itself."""
    return status == 408 or status >= 500


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, given as a number or as an HTTP date; None when absent
    or unreadable (never negative, never infinite)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
