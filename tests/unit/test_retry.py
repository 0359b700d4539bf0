from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.errors import PermanentError, TransientError, WaitForTurn
from domain.retry import GiveUp, Retry, RetryPolicy, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=2, cap_seconds=60, max_attempts=5)


@given(attempt=st.integers(1, 40), seed=st.integers())
def test_full_jitter_stays_between_zero_and_the_capped_exponential(attempt: int, seed: int) -> None:
    delay = POLICY.delay(attempt, None, random.Random(seed))
    assert 0 <= delay <= min(60, 2 * 2 ** (attempt - 1))


def test_delays_spread_rather_than_march_in_step() -> None:
    rng = random.Random(7)
    delays = {round(POLICY.delay(4, None, rng), 3) for _ in range(50)}
    assert len(delays) > 40


@given(retry_after=st.floats(0.1, 10_000), seed=st.integers())
def test_retry_after_is_a_floor_clamped_to_the_cap(retry_after: float, seed: int) -> None:
    delay = POLICY.delay(1, retry_after, random.Random(seed))
    assert delay >= min(retry_after, 60)
    assert delay <= 60


def test_transient_errors_retry_until_attempts_are_used_up() -> None:
    error = TransientError("timeout", retry_after=3)
    decision = decide(POLICY, error, 1, NOW, random.Random(1))
    assert isinstance(decision, Retry)
    assert decision.at == NOW + timedelta(seconds=decision.delay_seconds)
    assert decision.delay_seconds >= 3
    assert decide(POLICY, error, 5, NOW) == GiveUp("exhausted")


def test_permanent_errors_give_up_at_once() -> None:
    assert decide(POLICY, PermanentError("bad mapping"), 1, NOW) == GiveUp("permanent")


def test_unexpected_exceptions_are_retried_like_transient_ones() -> None:
    assert isinstance(decide(POLICY, KeyError("x"), 1, NOW), Retry)
    assert decide(POLICY, KeyError("x"), 5, NOW) == GiveUp("exhausted")


@given(attempt=st.integers(1, 1000), retry_after=st.floats(0, 10_000), seed=st.integers())
def test_a_wait_for_a_turn_is_never_given_up_and_uses_no_attempt(
    attempt: int, retry_after: float, seed: int
) -> None:
    decision = decide(
        POLICY, WaitForTurn(retry_after=retry_after), attempt, NOW, random.Random(seed)
    )
    assert isinstance(decision, Retry)
    assert not decision.uses_attempt
    # not before the turn comes (unless that is past the cap), never past the cap
    assert min(retry_after, 60) <= decision.delay_seconds <= 60
    assert decision.at == NOW + timedelta(seconds=decision.delay_seconds)


def test_a_failure_uses_its_attempt() -> None:
    decision = decide(POLICY, TransientError("timeout"), 1, NOW)
    assert isinstance(decision, Retry)
    assert decision.uses_attempt


WEBHOOK_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
SCHEDULED = RetryPolicy.scheduled(WEBHOOK_SCHEDULE, 0.2)


@given(seed=st.integers())
def test_a_schedule_waits_each_planned_delay_within_its_spread(seed: int) -> None:
    rng = random.Random(seed)
    for attempt, planned in enumerate(WEBHOOK_SCHEDULE, start=1):
        decision = decide(SCHEDULED, TransientError("500"), attempt, NOW, rng)
        assert isinstance(decision, Retry)
        assert planned * 0.8 <= decision.delay_seconds <= planned * 1.2


def test_a_schedule_gives_up_after_one_attempt_more_than_its_delays() -> None:
    last = len(WEBHOOK_SCHEDULE) + 1
    assert isinstance(decide(SCHEDULED, TransientError("500"), last - 1, NOW), Retry)
    assert decide(SCHEDULED, TransientError("500"), last, NOW) == GiveUp("exhausted")


def test_a_schedule_honours_a_longer_retry_after() -> None:
    decision = decide(SCHEDULED, TransientError("429", retry_after=120), 1, NOW)
    assert isinstance(decision, Retry)
    assert decision.delay_seconds >= 120


def test_a_short_schedule_still_honours_a_retry_after_of_up_to_an_hour() -> None:
    short = RetryPolicy.scheduled((1.0, 1.0), 0.2)
    decision = decide(short, TransientError("429", retry_after=30), 1, NOW)
    assert isinstance(decision, Retry)
    assert decision.delay_seconds >= 30
    plain = decide(short, TransientError("500"), 1, NOW)
    assert isinstance(plain, Retry)
    assert plain.delay_seconds <= 1.2
