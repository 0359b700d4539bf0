"""What a task logs and counts for each outcome of processing an event."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from domain import routing
from domain.errors import TransientError, WaitForTurn
from domain.processing import Failed
from domain.retry import Retry
from tasks.process_event import _settle
from workers import metrics

LATER = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry", "error", "logged", "counted"),
    [
        (Retry(3.0, LATER), TransientError("busy"), "event.retry", 1),
        (Retry(3.0, LATER, uses_attempt=False), WaitForTurn(retry_after=3.0), "event.waiting", 0),
    ],
)
def test_a_wait_for_a_turn_is_logged_as_a_wait_and_not_counted_as_a_retry(
    retry: Retry, error: BaseException, logged: str, counted: int
) -> None:
    before = metrics.events_retried._value.get()
    task = SimpleNamespace(name=routing.PROCESS_EVENT_TASK)
    with capture_logs() as logs:
        assert _settle(task, "evt_1", Failed(retry, 2, error, countdown=False)) == "retrying"  # type: ignore[arg-type]
    assert [entry["event"] for entry in logs] == [logged]
    assert metrics.events_retried._value.get() - before == counted
