"""Processing one event: claim it, run its handlers idempotently, record the outcome.

Claims are leases: a worker that dies mid-event leaves the event ``processing`` until
``lease_until`` passes (or at once, when its parent saw it die: ``release_lost_claims``),
and whoever claims it next marks the lost attempt. Every
outcome is written with a fence (``attempts`` must still equal the claim's attempt
number), so a worker whose lease ran out can never overwrite a newer attempt.

A wait for a turn under a rate limit (``WaitForTurn``) gives its attempt back: the event
returns to ``retrying`` with ``attempts`` one lower, and its history row says ``waited``.
The fence stays sound: only the holder of the current claim can lower the count, and only
to the number it claimed from, so ``processing`` with a given count is only ever entered
by a claim, and a claim whose lease ran out can never match the fence again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from domain import routing
from domain.catalogue import DeadEventFields
from domain.clock import utcnow
from domain.db import transaction
from domain.errors import MeterbridgeError
from domain.eventlog import APPENDED, append_internal
from domain.events import Attempt, AttemptOutcome, Event, EventStatus, LedgerEntry
from domain.failures import count_failure, count_success
from domain.handlers import Handler, HandlerRegistry, InboundEvent
from domain.logs import describe_error
from domain.retry import Decision, GiveUp, Retry, RetryPolicy, decide
from domain.sources import Source

MAX_ERROR_CHARS = 2000

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    event: InboundEvent
    attempt_number: int
    attempt_id: int
    replay: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to do: done already, not yet due, held, or claimed by another worker."""

    reason: str


#: (event id, event type) of events appended while processing one: to publish at once.
FollowUps = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Done:
    status: EventStatus
    attempt: int
    follow_ups: FollowUps = ()


@dataclass(frozen=True, slots=True)
class Failed:
    decision: Decision
    attempt: int
    error: BaseException
    #: True when the caller should schedule the retry as a broker countdown; False when
    #: the wait is too long for one and the sweeper publishes it when due.
    countdown: bool = False
    follow_ups: FollowUps = ()


Outcome = Skipped | Done | Failed


def _claimable(event: Event, now: datetime) -> bool:
    if event.status == EventStatus.PENDING:
        return True
    if event.status == EventStatus.RETRYING:
        return event.next_attempt_at is None or event.next_attempt_at <= now
    if event.status == EventStatus.PROCESSING:
        return event.lease_until is None or event.lease_until < now
    return False


def claim(
    session: Session,
    event_id: str,
    *,
    now: datetime,
    lease_seconds: float,
    task_id: str | None = None,
    worker: str | None = None,
) -> Claim | Skipped:
    event = session.get(Event, event_id)
    if event is None:
        return Skipped("unknown event")
    if not _claimable(event, now):
        return Skipped(f"status {event.status}")
    if event.source_id is not None:
        source = session.get(Source, event.source_id)
        if source is not None and not source.enabled:
            held = _fenced_update(session, event, status=EventStatus.HELD, lease_until=None)
            return Skipped("source disabled: held" if held else "claimed elsewhere")
    number = event.attempts + 1
    abandoned = event.status == EventStatus.PROCESSING
    if not _fenced_update(
        session,
        event,
        status=EventStatus.PROCESSING,
        attempts=number,
        lease_until=now + timedelta(seconds=lease_seconds),
    ):
        return Skipped("claimed elsewhere")
    if abandoned:  # its worker died or ran out of lease: say so in the history
        _mark_lost_attempts(session, event_id, now)
    attempt = Attempt(
        event_id=event_id,
        org_id=event.org_id,
        number=number,
        replay=event.replays,
        task_id=task_id,
        worker=worker,
        started_at=now,
    )
    session.add(attempt)
    session.flush()
    assert attempt.id is not None
    return Claim(inbound(event), number, attempt.id, event.replays, now)


def _fenced_update(session: Session, event: Event, **values: object) -> bool:
    """Update only if nobody changed the event since we read it."""
    result = session.exec(
        update(Event)
        .where(
            col(Event.id) == event.id,
            col(Event.status) == event.status,
            col(Event.attempts) == event.attempts,
        )
        .values(**values)
    )
    return result.rowcount == 1


def _mark_lost_attempts(
    session: Session,
    event_id: str,
    now: datetime,
    why: str = "worker stopped before recording an outcome; lease expired",
) -> None:
    session.exec(
        update(Attempt)
        .where(col(Attempt.event_id) == event_id, col(Attempt.outcome) == AttemptOutcome.STARTED)
        .values(outcome=AttemptOutcome.LOST, finished_at=now, error_message=why)
    )


def release_lost_claims(
    session: Session, task_id: str, event_ids: list[str], now: datetime
) -> list[str]:
    """End the leases a task held when its worker process died under it.

    Only the worker's parent process can know that a pool process died mid-task (it
    reaps the child); it calls this before the message is redelivered, so the next claim
    need not wait out the lease. Fenced like every other write: only an event still
    processing under that task's attempt is released."""
    started = session.exec(
        select(Attempt.event_id, Attempt.number).where(
            col(Attempt.event_id).in_(event_ids),
            col(Attempt.task_id) == task_id,
            col(Attempt.outcome) == AttemptOutcome.STARTED,
        )
    ).all()
    released = []
    for event_id, number in started:
        result = session.exec(
            update(Event)
            .where(
                col(Event.id) == event_id,
                col(Event.status) == EventStatus.PROCESSING,
                col(Event.attempts) == number,
            )
            .values(lease_until=now)
        )
        if result.rowcount == 1:
            _mark_lost_attempts(
                session, event_id, now, "worker process died before recording an outcome"
            )
            released.append(event_id)
    return released


def inbound(event: Event) -> InboundEvent:
    return InboundEvent(
        id=event.id,
        org_id=event.org_id,
        source_id=event.source_id,
        provider=event.provider,
        type=event.type,
        external_id=event.external_id,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        raw_payload=event.payload,
    )


#: Told how long each handler run took: (handler name, seconds, whether it succeeded).
HandlerObserver = Callable[[str, float, bool], None]


def run_handlers(
    session: Session,
    event: InboundEvent,
    handlers: list[Handler],
    *,
    first_try: bool = False,
    observe: HandlerObserver | None = None,
) -> None:
    """Run the handlers the ledger does not show as done, adding their ledger rows in the
    caller's transaction: effects and the proof of them commit together or not at all.
    ``first_try``: the event's first attempt ever, so the ledger cannot hold it yet (a
    concurrent writer would still collide on the ledger's key)."""
    for handler in handlers:
        if not first_try and session.get(LedgerEntry, (event.id, handler.name)) is not None:
            continue
        started, succeeded = time.perf_counter(), False
        try:
            handler.func(session, event)
            succeeded = True
        finally:
            if observe is not None:
                observe(handler.name, time.perf_counter() - started, succeeded)
        session.add(
            LedgerEntry(
                event_id=event.id, handler=handler.name, org_id=event.org_id, committed_at=utcnow()
            )
        )
    session.flush()


def record_done(session: Session, claimed: Claim, status: EventStatus, now: datetime) -> bool:
    fenced = _finish_event(
        session, claimed, status=status, finished_at=now, last_error=None, next_attempt_at=None
    )
    outcome = (
        AttemptOutcome.SUCCEEDED if status == EventStatus.PROCESSED else AttemptOutcome.IGNORED
    )
    _finish_attempt(session, claimed, now, outcome=outcome)
    return fenced


def record_failure(
    session: Session,
    claimed: Claim,
    error: BaseException,
    decision: Decision,
    now: datetime,
    *,
    sweep_after: datetime | None = None,
) -> bool:
    """``sweep_after``: when the sweeper should publish a retry whose countdown message got
    lost; None means the retry waits in the database alone and is published when due."""
    message = _describe(error)
    if isinstance(decision, Retry):
        given_back = {} if decision.uses_attempt else {"attempts": claimed.attempt_number - 1}
        fenced = _finish_event(
            session,
            claimed,
            status=EventStatus.RETRYING,
            next_attempt_at=decision.at,
            last_error=message,
            sweeps=0,
            sweep_after=sweep_after,
            **given_back,
        )
        outcome = AttemptOutcome.RETRY if decision.uses_attempt else AttemptOutcome.WAITED
        _finish_attempt(session, claimed, now, outcome=outcome, error=error, retry_at=decision.at)
    else:
        fenced = _finish_event(
            session,
            claimed,
            status=EventStatus.DEAD,
            dead_at=now,
            dead_reason=decision.reason,
            finished_at=now,
            next_attempt_at=None,
            last_error=message,
        )
        _finish_attempt(session, claimed, now, outcome=AttemptOutcome.DEAD, error=error)
    return fenced


def _finish_event(session: Session, claimed: Claim, **values: object) -> bool:
    result = session.exec(
        update(Event)
        .where(
            col(Event.id) == claimed.event.id,
            col(Event.status) == EventStatus.PROCESSING,
            col(Event.attempts) == claimed.attempt_number,
        )
        .values(lease_until=None, **values)
    )
    return result.rowcount == 1


def _finish_attempt(
    session: Session,
    claimed: Claim,
    now: datetime,
    *,
    outcome: AttemptOutcome,
    error: BaseException | None = None,
    retry_at: datetime | None = None,
) -> None:
    values: dict[str, object] = {
        "finished_at": now,
        "duration_ms": round((now - claimed.started_at).total_seconds() * 1000, 3),
        "outcome": outcome,
        "retry_at": retry_at,
    }
    if error is not None:
        values["error_class"] = f"{type(error).__module__}.{type(error).__qualname__}"
        values["error_message"] = _describe(error)
    session.exec(update(Attempt).where(col(Attempt.id) == claimed.attempt_id).values(**values))


def _describe(error: BaseException) -> str:
    """What an attempt and ``last_error`` record: a SQL error without its parameters."""
    return describe_error(error)[:MAX_ERROR_CHARS]


@dataclass(frozen=True, slots=True)
class Processor:
    """Everything ``process`` needs besides the event ids, fixed for a worker's life.

    A batch costs two commits when all goes well: one for the claims (so a worker that
    dies leaves its attempts on record), one for every event's handlers, ledger rows and
    outcome, each event inside a savepoint of its own so one failure rolls back only its
    event. Handlers registered ``isolated`` (they commit on their own or call out) get a
    transaction of their own. A failure is recorded in a transaction of its own.
    """

    engine: Engine
    registry: HandlerRegistry
    policy: RetryPolicy
    lease_seconds: float
    countdown_limit_seconds: float
    grace_seconds: float
    observe_handler: HandlerObserver | None = None
    #: Event types retried on a policy of their own (outbound webhooks' schedule).
    policies: Mapping[str, RetryPolicy] = field(default_factory=dict)

    def process(
        self, event_id: str, *, task_id: str | None = None, worker: str | None = None
    ) -> Outcome:
        return self.process_batch([event_id], task_id=task_id, worker=worker)[0]

    def process_batch(
        self, event_ids: list[str], *, task_id: str | None = None, worker: str | None = None
    ) -> list[Outcome]:
        now = utcnow()
        with transaction(self.engine) as session:
            results: list[Outcome | Claim] = [
                claim(
                    session,
                    event_id,
                    now=now,
                    lease_seconds=self.lease_seconds,
                    task_id=task_id,
                    worker=worker,
                )
                for event_id in event_ids
            ]
        claimed = [(i, c) for i, c in enumerate(results) if isinstance(c, Claim)]
        shared = [(i, c) for i, c in claimed if not self._isolated(c)]
        isolated = [(i, c) for i, c in claimed if self._isolated(c)]
        failures: list[tuple[int, Claim, Exception]] = []
        if shared:
            with transaction(self.engine) as session:
                for index, claim_ in shared:
                    results[index] = self._attempt(session, claim_, failures, index)
        for index, claim_ in isolated:
            with transaction(self.engine) as session:
                results[index] = self._attempt(session, claim_, failures, index)
        for index, claim_, error in failures:
            results[index] = self._fail(claim_, error)
        assert not any(isinstance(r, Claim) for r in results)
        return results  # type: ignore[return-value]

    def _isolated(self, claimed: Claim) -> bool:
        handlers = self.registry.for_event(claimed.event.provider, claimed.event.type)
        return any(handler.isolated for handler in handlers)

    def _attempt(
        self,
        session: Session,
        claimed: Claim,
        failures: list[tuple[int, Claim, Exception]],
        index: int,
    ) -> Outcome | Claim:
        structlog.contextvars.bind_contextvars(
            event_id=claimed.event.id,
            source_id=claimed.event.source_id,
            attempt=claimed.attempt_number,
        )
        handlers = self.registry.for_event(claimed.event.provider, claimed.event.type)
        appended = session.info.setdefault(APPENDED, [])
        mark = len(appended)
        status = EventStatus.PROCESSED if handlers else EventStatus.IGNORED
        try:
            with session.begin_nested():
                first_try = claimed.attempt_number == 1 and claimed.replay == 0
                run_handlers(
                    session,
                    claimed.event,
                    handlers,
                    first_try=first_try,
                    observe=self.observe_handler,
                )
                if record_done(session, claimed, status, utcnow()) and claimed.event.source_id:
                    count_success(session, Source, claimed.event.source_id)
        except Exception as error:
            del appended[mark:]  # rolled back with the savepoint
            failures.append((index, claimed, error))
            return claimed
        return Done(status, claimed.attempt_number, tuple(appended[mark:]))

    def _fail(self, claimed: Claim, error: Exception) -> Failed:
        if not isinstance(error, MeterbridgeError):  # a bug or an outage: keep the traceback
            log.warning("handler.unexpected_error", exc_info=error)
        now = utcnow()
        policy = self.policies.get(claimed.event.type, self.policy)
        decision = decide(policy, error, claimed.attempt_number, now)
        countdown = (
            isinstance(decision, Retry) and decision.delay_seconds <= self.countdown_limit_seconds
        )
        sweep_after = (
            decision.at + timedelta(seconds=self.grace_seconds)
            if countdown and isinstance(decision, Retry)
            else None
        )
        with transaction(self.engine) as session:
            appended = session.info.setdefault(APPENDED, [])
            if record_failure(session, claimed, error, decision, now, sweep_after=sweep_after):
                self._run_failure_hooks(session, claimed.event, error, decision)
                if isinstance(decision, GiveUp) and announces_death(claimed.event.type):
                    log_dead(session, claimed, decision, error, now)
                if isinstance(decision, GiveUp) and claimed.event.source_id:
                    # an inbound event that ends dead is a failure of its source
                    count_failure(
                        session,
                        Source,
                        claimed.event.source_id,
                        now=now,
                        caused_by=claimed.event.id,
                    )
        return Failed(decision, claimed.attempt_number, error, countdown, tuple(appended))

    def _run_failure_hooks(
        self, session: Session, event: InboundEvent, error: Exception, decision: Decision
    ) -> None:
        for hook in self.registry.failure_hooks(event.provider, event.type):
            try:
                with session.begin_nested():
                    hook(session, event, error, decision)
            except Exception:  # a broken hook must not lose the failure record
                log.exception("failure_hook.failed", hook=getattr(hook, "__qualname__", hook))


EVENT_DEAD = "event.dead"


def announces_death(event_type: str) -> bool:
    """Whether an event of this type that ends dead logs ``event.dead``: not ``event.dead``
    itself, nor a type with a task of its own (a notification's delivery: it keeps its
    own failure record, and announcing it would notify about notifying, in a loop)."""
    return event_type != EVENT_DEAD and event_type not in routing.TASKS_BY_TYPE


def log_dead(
    session: Session, claimed: Claim, decision: GiveUp, error: BaseException, now: datetime
) -> Event:
    """Append ``event.dead`` for the claimed event, in the transaction that recorded it
    dead (after the fenced write won: only the attempt that killed it logs)."""
    event = claimed.event
    payload = DeadEventFields(
        event_id=event.id,
        source_id=event.source_id,
        provider=event.provider,
        type=event.type,
        attempts=claimed.attempt_number,
        dead_reason=decision.reason,
        last_error=_describe(error),
        dead_at=now,
    )
    return append_internal(
        session,
        org_id=event.org_id,
        type=EVENT_DEAD,
        payload=payload.model_dump(mode="json"),
        caused_by=event.id,
    )


__all__ = ["Claim", "Done", "Failed", "GiveUp", "Outcome", "Processor", "Retry", "Skipped"]
