"""Stripe's turns under the shared limiter, on a fake Redis and a clock the test moves (as
``test_ratelimits`` does): slots keep every ``rate + 1`` requests to an endpoint more than a
second apart, whichever worker sends them; a 429 holds the credential back and is a wait."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import fakeredis
import pytest

from domain.destinations.stripe import StripeCredential
from domain.errors import WaitForTurn
from tests.workers.test_ratelimits import START, Clock
from workers.destinations.stripe.client import RateLimited
from workers.destinations.stripe.turns import (
    DEFAULT_JITTER_MARGIN,
    FIRST_WAIT_SECONDS,
    StripeTurns,
)
from workers.ratelimits import RateLimiter

ITEMS = "POST /v1/invoiceitems"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.time)
    return fake


@pytest.fixture
def limiter(clock: Clock) -> Iterator[RateLimiter]:
    redis = fakeredis.FakeRedis()
    yield RateLimiter(redis, sleep=clock.sleep)
    redis.flushall()


def turns(limiter: RateLimiter, clock: Clock, rate: int = 5) -> StripeTurns:
    credential = StripeCredential.model_validate(
        {"api_key": "sk_test_x", "requests_per_second": rate}
    )
    return StripeTurns(limiter, "crd_1", credential, clock=clock.time, sleep=clock.sleep)


@pytest.mark.parametrize("rate", [5, 25])
def test_any_rate_plus_one_requests_to_an_endpoint_span_more_than_a_second(
    limiter: RateLimiter, clock: Clock, rate: int
) -> None:
    # given four workers taking turns on one endpoint, each as soon as its last returned
    workers = [turns(limiter, clock, rate) for _ in range(4)]
    rng = random.Random(5)
    sent = []
    while clock.now < START + 20:
        worker = rng.choice(workers)
        clock.now += rng.choice([0.0, 0.001, 0.003, 0.02])
        worker.take(ITEMS)
        sent.append(clock.now)
    # then every rate + 1 consecutive requests span the second plus the margin, and the
    # limit is used: its rate less the margin
    spans = [sent[i + rate] - sent[i] for i in range(len(sent) - rate)]
    assert min(spans) >= 1 + DEFAULT_JITTER_MARGIN - 1e-6  # the clock is a float near 1.9e9
    assert len(sent) >= 20 * rate / (1 + DEFAULT_JITTER_MARGIN) - 2


def test_endpoints_have_windows_of_their_own(limiter: RateLimiter, clock: Clock) -> None:
    mine = turns(limiter, clock)
    mine.take(ITEMS)
    before = clock.now
    mine.take("POST /v1/invoices")  # its first slot is free: no wait for the other endpoint
    assert clock.now - before < mine.slot_seconds


def test_a_429_holds_the_whole_credential_back_and_is_a_wait(
    limiter: RateLimiter, clock: Clock
) -> None:
    sender = turns(limiter, clock)
    with pytest.raises(WaitForTurn) as raised, sender.pushed_back_by_429():
        raise RateLimited("Stripe 429", retry_after=3)
    assert (raised.value.retry_after, raised.value.key) == (3, "stripe:crd_1")
    # every endpoint of the credential, in any worker: a first turn gives the worker back
    other = turns(limiter, clock)
    with pytest.raises(WaitForTurn) as waiting:
        other.take("GET /v1/invoices/{id}")
    assert waiting.value.retry_after > FIRST_WAIT_SECONDS
    # once its wait is over, it goes
    clock.now += 3
    other.take("GET /v1/invoices/{id}")


def test_a_begun_attempt_waits_for_later_turns_in_the_worker(
    limiter: RateLimiter, clock: Clock
) -> None:
    sender = turns(limiter, clock, rate=1)
    sender.take(ITEMS)  # the window of one a second is now full for a second
    before = clock.now
    sender.take(ITEMS)  # a later turn of the same attempt sleeps for it
    assert clock.now - before >= 1
    fresh = turns(limiter, clock, rate=1)
    with pytest.raises(WaitForTurn):  # a first turn does not wait that long
        fresh.take(ITEMS)
