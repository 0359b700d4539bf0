"""The request class of event tasks: a pool process that dies mid-task gives its claims
back at once.

Celery's parent process is the one that sees a pool process die (OOM killer, SIGKILL,
a segfault in a C extension). It requeues the message (``task_reject_on_worker_lost``),
but the redelivered task would find its events still leased to the dead attempt and
wait out the lease (the hard time limit plus a margin). Releasing the claims here, before
the requeue, lets the next attempt start at once; if this fails, the lease still expires
and the sweeper republishes, as for a whole worker that died.
"""

from __future__ import annotations

from typing import Any

import structlog
from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request
from sqlalchemy.exc import SQLAlchemyError

from domain.clock import utcnow
from domain.db import transaction
from domain.processing import release_lost_claims
from workers.runtime import runtime

log = structlog.get_logger(__name__)

#: What the parent reports when the pool process running a task is gone.
PROCESS_GONE = (WorkerLostError, TimeLimitExceeded, SystemExit, KeyboardInterrupt)


class EventTaskRequest(Request):
    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        error = exc_info.exception
        if isinstance(error, ExceptionWithTraceback):
            error = error.exc
        if isinstance(error, PROCESS_GONE):
            release_claims(self.id, event_ids_of(self.args))
        return super().on_failure(exc_info, send_failed_event, return_ok)


def event_ids_of(args: Any) -> list[str]:
    """The event ids an event task was called with: one id or a batch of them."""
    if not args:
        return []
    first = args[0]
    return [str(item) for item in first] if isinstance(first, list) else [str(first)]


def release_claims(task_id: str, event_ids: list[str]) -> None:
    if not event_ids:
        return
    try:
        with transaction(runtime().engine) as session:
            released = release_lost_claims(session, task_id, event_ids, utcnow())
    except SQLAlchemyError as error:  # the lease runs out on its own
        log.warning("claims.release_failed", task_id=task_id, error=type(error).__name__)
        return
    if released:
        log.warning("claims.released", task_id=task_id, event_ids=released)
