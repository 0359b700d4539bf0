"""Claims, the ledger, and outcomes, run in-process against the test database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from domain.clock import utcnow
from domain.db import transaction
from domain.errors import TransientError, WaitForTurn
from domain.events import Attempt, AttemptOutcome, Event, EventStatus, LedgerEntry
from domain.handlers import HandlerRegistry, InboundEvent
from domain.processing import (
    Claim,
    Done,
    Failed,
    Processor,
    Skipped,
    claim,
    release_lost_claims,
)
from domain.retry import GiveUp, Retry, RetryPolicy, decide
from domain.sources import Source
from tests.domain import factories
from tests.support import handlers
from tests.support.environment import Environment

FAST = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, max_attempts=3)


def processor(
    env: Environment,
    registry: HandlerRegistry | None = None,
    policy: RetryPolicy = FAST,
    **kwargs: float,
) -> Processor:
    options = {"lease_seconds": 60, "countdown_limit_seconds": 30, "grace_seconds": 2} | kwargs
    return Processor(env.engine, registry or handlers.registry, policy, **options)


def effects_of(env: Environment, event_id: str) -> list[str]:
    with env.engine.connect() as connection:
        rows = connection.execute(
            sa.select(handlers.effects.c.handler).where(handlers.effects.c.event_id == event_id)
        )
        return sorted(row.handler for row in rows)


def load(env: Environment, event_id: str) -> tuple[Event, list[Attempt]]:
    with Session(env.engine) as session:
        event = session.get(Event, event_id)
        attempts = session.exec(
            select(Attempt).where(Attempt.event_id == event_id).order_by(Attempt.id)
        )
        assert event is not None
        return event, list(attempts)


def test_each_handler_commits_its_effect_once(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "test.effect")
    assert processor(env).process(event_id) == Done(EventStatus.PROCESSED, 1)
    assert processor(env).process(event_id) == Skipped("status processed")
    assert effects_of(env, event_id) == ["effect", "second"]
    with Session(env.engine) as session:
        assert (
            len(session.exec(select(LedgerEntry).where(LedgerEntry.event_id == event_id)).all())
            == 2
        )


def test_a_handler_already_in_the_ledger_is_not_run_again(env: Environment) -> None:
    # given a first attempt that committed the first handler, then lost its claim
    event_id = factories.event(env, factories.source(env), "test.effect")
    first = handlers.registry.for_event("generic", "test.effect")[0]
    with transaction(env.engine) as session:
        handlers._effect(session, _inbound(session, event_id), "effect")
        session.add(
            LedgerEntry(
                event_id=event_id, handler=first.name, org_id="org_default", committed_at=utcnow()
            )
        )
        session.exec(
            sa.update(Event)
            .where(Event.id == event_id)
            .values(status=EventStatus.RETRYING, attempts=1, next_attempt_at=utcnow())
        )
    # when the event is processed again
    processor(env).process(event_id)
    # then only the second handler ran
    assert effects_of(env, event_id) == ["effect", "second"]


def _inbound(session: Session, event_id: str) -> InboundEvent:
    from domain.processing import inbound

    row = session.get(Event, event_id)
    assert row is not None
    return inbound(row)


def test_unknown_types_are_ignored_not_errors(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "nobody.handles.this")
    assert processor(env).process(event_id) == Done(EventStatus.IGNORED, 1)
    event, attempts = load(env, event_id)
    assert event.status == EventStatus.IGNORED
    assert [a.outcome for a in attempts] == [AttemptOutcome.IGNORED]


def test_transient_failures_are_scheduled_then_succeed(env: Environment) -> None:
    event_id = factories.event(
        env, factories.source(env), "test.transient", fail_times=1, retry_after=5
    )
    outcome = processor(env).process(event_id)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.decision, Retry)
    assert outcome.countdown
    event, attempts = load(env, event_id)
    assert event.status == EventStatus.RETRYING
    assert event.next_attempt_at is not None
    assert event.sweep_after is not None
    assert event.sweep_after > event.next_attempt_at
    assert attempts[0].outcome == AttemptOutcome.RETRY
    assert attempts[0].error_class == "domain.errors.TransientError"
    assert attempts[0].retry_at == event.next_attempt_at
    # not due yet: a redelivered message does nothing
    assert processor(env).process(event_id) == Skipped("status retrying")
    with transaction(env.engine) as session:
        session.exec(sa.update(Event).where(Event.id == event_id).values(next_attempt_at=utcnow()))
    assert processor(env).process(event_id) == Done(EventStatus.PROCESSED, 2)
    assert effects_of(env, event_id) == ["transient"]


def test_long_waits_stay_in_the_database(env: Environment) -> None:
    event_id = factories.event(
        env, factories.source(env), "test.transient", fail_times=1, retry_after=45
    )
    slow_policy = RetryPolicy(base_seconds=1, cap_seconds=600, max_attempts=3)
    outcome = processor(env, policy=slow_policy, countdown_limit_seconds=30).process(event_id)
    assert isinstance(outcome, Failed)
    assert not outcome.countdown
    event, _ = load(env, event_id)
    assert event.sweep_after is None  # the sweeper publishes it when due


def test_permanent_failures_go_dead_at_once(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "test.permanent", account="acc_9")
    outcome = processor(env).process(event_id)
    assert isinstance(outcome, Failed)
    assert outcome.decision == GiveUp("permanent")
    event, attempts = load(env, event_id)
    assert (event.status, event.dead_reason, event.attempts) == (EventStatus.DEAD, "permanent", 1)
    assert "acc_9" in (event.last_error or "")
    assert attempts[0].outcome == AttemptOutcome.DEAD


def test_attempts_run_out(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "test.crash")
    proc = processor(env)
    for _ in range(3):
        proc.process(event_id)
        with transaction(env.engine) as session:
            session.exec(
                sa.update(Event).where(Event.id == event_id).values(next_attempt_at=utcnow())
            )
    event, attempts = load(env, event_id)
    assert (event.status, event.dead_reason) == (EventStatus.DEAD, "exhausted")
    assert [a.outcome for a in attempts] == ["retry", "retry", "dead"]
    assert all(a.error_class == "builtins.KeyError" for a in attempts)


def test_a_disabled_source_holds_its_events(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env, enabled=False), "test.effect")
    assert processor(env).process(event_id) == Skipped("source disabled: held")
    event, attempts = load(env, event_id)
    assert event.status == EventStatus.HELD
    assert attempts == []
    assert effects_of(env, event_id) == []


def test_only_one_of_two_claims_wins(env: Environment) -> None:
    event_id = factories.event(env, factories.source(env), "test.effect")
    now = utcnow()
    with Session(env.engine) as first, Session(env.engine) as second:
        stale = second.get(Event, event_id)  # read before the first claim commits
        assert stale is not None
        won = claim(first, event_id, now=now, lease_seconds=60)
        first.commit()
        from domain.processing import _fenced_update

        assert not _fenced_update(second, stale, status=EventStatus.PROCESSING, attempts=1)
    assert not isinstance(won, Skipped)
    with Session(env.engine) as session:
        assert claim(session, event_id, now=now, lease_seconds=60) == Skipped("status processing")


def test_an_expired_lease_is_reclaimed_and_the_lost_attempt_recorded(env: Environment) -> None:
    # given a worker that claimed the event and died
    event_id = factories.event(env, factories.source(env), "test.effect")
    with transaction(env.engine) as session:
        dead_claim = claim(
            session, event_id, now=utcnow() - timedelta(seconds=120), lease_seconds=60
        )
    assert not isinstance(dead_claim, Skipped)
    # when another worker processes it after the lease ran out
    assert processor(env).process(event_id) == Done(EventStatus.PROCESSED, 2)
    # then the first attempt is recorded as lost, and the late worker cannot overwrite
    _, attempts = load(env, event_id)
    assert [a.outcome for a in attempts] == ["lost", "succeeded"]
    from domain.processing import record_done

    with transaction(env.engine) as session:
        assert not record_done(session, dead_claim, EventStatus.PROCESSED, utcnow())
    assert effects_of(env, event_id) == ["effect", "second"]


def test_claims_of_a_dead_pool_process_are_released_only_for_its_own_attempt(
    env: Environment,
) -> None:
    source_id = factories.source(env)
    mine, taken_over = (factories.event(env, source_id, "test.effect") for _ in range(2))
    now = utcnow()
    with transaction(env.engine) as session:
        for event_id in (mine, taken_over):
            claim(
                session, event_id, now=now - timedelta(seconds=120), lease_seconds=60, task_id="t1"
            )
    # another worker already took over the second event after the lease ran out
    with transaction(env.engine) as session:
        claim(session, taken_over, now=now, lease_seconds=60, task_id="t2")

    with transaction(env.engine) as session:
        released = release_lost_claims(session, "t1", [mine, taken_over], now)

    assert released == [mine]
    event, attempts = load(env, mine)
    assert (event.status, event.lease_until) == (EventStatus.PROCESSING, now)
    assert [a.outcome for a in attempts] == ["lost"]
    assert processor(env).process(mine) == Done(EventStatus.PROCESSED, 2)
    event, attempts = load(env, taken_over)
    assert event.lease_until is not None
    assert event.lease_until > now
    assert [a.outcome for a in attempts] == ["lost", "started"]


def test_a_transient_handler_error_leaves_no_partial_effect(env: Environment) -> None:
    registry = HandlerRegistry()

    @registry.register("generic", "half")
    def half(session: Session, event: InboundEvent) -> None:
        handlers._effect(session, event, "half")
        session.flush()
        raise TransientError("boom after writing")

    event_id = factories.event(env, factories.source(env), "half")
    assert isinstance(processor(env, registry).process(event_id), Failed)
    assert effects_of(env, event_id) == []


def test_duplicate_handler_names_are_refused() -> None:
    registry = HandlerRegistry()

    def first(session: Session, event: InboundEvent) -> None:
        return None

    def second(session: Session, event: InboundEvent) -> None:
        return None

    registry.register("p", "t", name="h")(first)
    with pytest.raises(ValueError, match="'h' is already registered"):
        registry.register("p", "t", name="h")(second)
    # the refused one neither replaced the first nor joined it; another name is welcome
    registry.register("p", "t", name="h2")(second)
    assert [(h.name, h.func) for h in registry.for_event("p", "t")] == [
        ("h", first),
        ("h2", second),
    ]


def waits_then_succeeds(turns: list[bool]) -> HandlerRegistry:
    """A registry whose handler takes its turns from ``turns`` in order: False raises
    ``WaitForTurn`` (no room under a rate limit), True runs; a failure hook records the
    decision each failure came to."""
    registry = HandlerRegistry()

    @registry.register("generic", "turns")
    def take_turn(session: Session, event: InboundEvent) -> None:
        if not turns.pop(0):
            raise WaitForTurn(retry_after=0.01, key="stripe:crd_1")
        handlers._effect(session, event, "turn")

    return registry


def due_now(env: Environment, event_id: str) -> None:
    with transaction(env.engine) as session:
        session.exec(sa.update(Event).where(Event.id == event_id).values(next_attempt_at=utcnow()))


def test_waiting_for_a_turn_uses_no_attempt(env: Environment) -> None:
    # given a handler that waits for its turn more often than there are attempts (3)
    event_id = factories.event(env, factories.source(env), "turns")
    proc = processor(env, waits_then_succeeds([False] * 5 + [True]))
    # when it is processed each time it is due
    for _ in range(5):
        outcome = proc.process(event_id)
        # then each wait is a retry that gives its attempt back
        assert isinstance(outcome, Failed)
        assert isinstance(outcome.decision, Retry)
        assert not outcome.decision.uses_attempt
        event, _ = load(env, event_id)
        assert (event.status, event.attempts) == (EventStatus.RETRYING, 0)
        due_now(env, event_id)
    # and the run that finally gets its turn is the first attempt
    assert proc.process(event_id) == Done(EventStatus.PROCESSED, 1)
    event, attempts = load(env, event_id)
    assert (event.status, event.attempts, event.dead_reason) == (EventStatus.PROCESSED, 1, None)
    assert effects_of(env, event_id) == ["turn"]
    # and the history shows every wait
    assert [a.outcome for a in attempts] == ["waited"] * 5 + ["succeeded"]
    assert all(a.error_class == "domain.errors.WaitForTurn" for a in attempts[:5])
    assert "for a turn under the rate limit of stripe:crd_1" in (attempts[0].error_message or "")
    assert all(a.retry_at is not None for a in attempts[:5])


def test_failures_between_waits_still_use_their_attempts(env: Environment) -> None:
    source_id = factories.source(env)
    event_id = factories.event(env, source_id, "turns")
    registry = HandlerRegistry()
    plan = ["fail", "wait", "wait", "fail", "wait", "fail"]

    @registry.register("generic", "turns")
    def fail_or_wait(session: Session, event: InboundEvent) -> None:
        if plan.pop(0) == "wait":
            raise WaitForTurn(retry_after=0.01)
        raise TransientError("upstream 503")

    proc = processor(env, registry)  # 3 attempts
    counts = []
    for _ in range(6):
        proc.process(event_id)
        event, _ = load(env, event_id)
        counts.append(event.attempts)
        due_now(env, event_id)
    assert counts == [1, 1, 1, 2, 2, 3]
    event, attempts = load(env, event_id)
    assert (event.status, event.dead_reason) == (EventStatus.DEAD, "exhausted")
    assert [a.outcome for a in attempts] == ["retry", "waited", "waited", "retry", "waited", "dead"]
    assert [a.number for a in attempts] == [1, 2, 2, 2, 3, 3]


def test_a_wait_reaches_failure_hooks_as_a_retry_and_counts_no_failure(env: Environment) -> None:
    """``record_run_failure`` leaves a run AWAITING_RETRY for any ``Retry`` and counts a
    failure only when it gives up; a source counts one only for a dead event."""
    source_id = factories.source(env)
    event_id = factories.event(env, source_id, "turns")
    registry = waits_then_succeeds([False])
    seen: list[tuple[type[BaseException], object]] = []
    registry.on_failure("generic", "turns")(
        lambda session, event, error, decision: seen.append((type(error), decision))
    )
    outcome = processor(env, registry).process(event_id)
    assert isinstance(outcome, Failed)
    assert [(error, type(decision)) for error, decision in seen] == [(WaitForTurn, Retry)]
    with Session(env.engine) as session:
        source = session.get(Source, source_id)
        assert source is not None
        assert source.consecutive_errors == 0


def test_a_stale_claim_cannot_record_after_a_wait_gave_its_attempt_back(
    env: Environment,
) -> None:
    # given a worker whose claim (attempt 1) ran out of lease while it was still running
    event_id = factories.event(env, factories.source(env), "turns")
    with transaction(env.engine) as session:
        stale = claim(session, event_id, now=utcnow() - timedelta(seconds=120), lease_seconds=60)
    assert isinstance(stale, Claim)
    # and another worker that took over (attempt 2) and had to wait: the count is 1 again
    proc = processor(env, waits_then_succeeds([False, True]))
    assert isinstance(proc.process(event_id), Failed)
    event, _ = load(env, event_id)
    assert (event.status, event.attempts) == (EventStatus.RETRYING, 1)
    # then the stale worker can record nothing, whether the event waits or runs again
    from domain.processing import record_done, record_failure

    with transaction(env.engine) as session:
        assert not record_done(session, stale, EventStatus.PROCESSED, utcnow())
    due_now(env, event_id)
    with transaction(env.engine) as session:
        running = claim(session, event_id, now=utcnow(), lease_seconds=60)
    assert isinstance(running, Claim)
    assert running.attempt_number == 2
    wait = WaitForTurn(retry_after=1)
    with transaction(env.engine) as session:
        assert not record_done(session, stale, EventStatus.PROCESSED, utcnow())
        assert not record_failure(session, stale, wait, decide(FAST, wait, 1, utcnow()), utcnow())
    event, attempts = load(env, event_id)
    assert (event.status, event.attempts) == (EventStatus.PROCESSING, 2)
    assert [a.outcome for a in attempts[1:]] == ["waited", "started"]
    # while the current claim records its outcome as usual
    with transaction(env.engine) as session:
        assert record_done(session, running, EventStatus.PROCESSED, utcnow())
