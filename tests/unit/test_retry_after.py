"""``Retry-After`` as every destination's client reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from workers.destinations.http import retry_after


def answer(value: str | None) -> httpx.Response:
    return httpx.Response(429, headers={} if value is None else {"retry-after": value})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("1.5", 1.5), ("-2", 0.0), (None, None), ("soon", None), ("inf", None)],
)
def test_seconds_are_read_as_given_and_nonsense_as_nothing(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after(answer(value)) == seconds


def test_an_http_date_is_the_seconds_until_it() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 27 <= (retry_after(answer(when)) or 0) <= 30
