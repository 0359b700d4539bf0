from __future__ import annotations

import structlog
from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from domain import routing
from domain.processing import Done, Failed, Outcome, Skipped
from domain.retry import GiveUp, Retry
from tasks.publish import enqueue
from workers import metrics
from workers.celery_app import app
from workers.runtime import runtime

log = structlog.get_logger(__name__)

#: Options of every task that processes events: only the database being unreachable
#: escapes the processor, and Celery retries that.
EVENT_TASK_OPTIONS: dict = {
    "bind": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
    "Request": "tasks.requests:EventTaskRequest",
}


@app.task(name=routing.PROCESS_EVENT_TASK, **EVENT_TASK_OPTIONS)
def process_event(self: Task, event_id: str) -> str:
    """Process one stored event: claim it, run its handlers once, record the outcome."""
    return process(self, event_id)


@app.task(name=routing.PROCESS_EVENTS_TASK, **EVENT_TASK_OPTIONS)
def process_events(self: Task, event_ids: list[str]) -> list[str]:
    """Process a batch of stored events (intake publishes them in batches under load)."""
    outcomes = runtime().processor.process_batch(
        event_ids, task_id=self.request.id, worker=self.request.hostname
    )
    return [
        _settle(self, event_id, outcome)
        for event_id, outcome in zip(event_ids, outcomes, strict=True)
    ]


def process(task: Task, event_id: str) -> str:
    """The body of every single-event task."""
    outcome = runtime().processor.process(
        event_id, task_id=task.request.id, worker=task.request.hostname
    )
    return _settle(task, event_id, outcome)


def _settle(task: Task, event_id: str, outcome: Outcome) -> str:
    """Log the outcome, publish the events it appended, schedule a short retry."""
    structlog.contextvars.bind_contextvars(event_id=event_id)
    if isinstance(outcome, Done | Failed) and outcome.follow_ups:
        enqueue(outcome.follow_ups)
    match outcome:
        case Skipped(reason):
            log.info("event.skipped", reason=reason)
            return f"skipped: {reason}"
        case Done(status, attempt):
            log.info("event.done", status=str(status), attempt=attempt)
            metrics.events_processed.labels(str(status)).inc()
            return str(status)
        case Failed(
            Retry(delay_seconds=delay, uses_attempt=uses_attempt), attempt, error, countdown
        ):
            # Waiting for a shared rate limit's turn is not a failure: logged as a wait,
            # not counted among retries.
            if uses_attempt:
                metrics.events_retried.inc()
            (log.warning if uses_attempt else log.info)(
                "event.retry" if uses_attempt else "event.waiting",
                attempt=attempt,
                error=type(error).__name__,
                delay=round(delay, 3),
                waits_in="broker" if countdown else "database",
            )
            # Short waits ride on a countdown; long ones wait in the database for the sweeper.
            if countdown:
                app.send_task(routing.retry_task(task.name), args=[event_id], countdown=delay)
            return "retrying"
        case Failed(GiveUp(reason=reason), attempt, error, _):
            metrics.events_dead.inc()
            log.error("event.dead", attempt=attempt, error=type(error).__name__, reason=reason)
            return "dead"
    raise AssertionError(f"unhandled outcome {outcome!r}")
