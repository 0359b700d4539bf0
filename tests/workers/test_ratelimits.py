"""The shared rate limiter on a fake Redis (with Lua, as the real one runs its scripts),
on a clock the test moves: the limiter, the ``limits`` package and the fake Redis all
read ``time.time``, and the limiter's sleeps move it on."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import fakeredis
import pytest

from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from workers.ratelimits import KEY_PREFIX, MAX_PUSH_BACK_SECONDS, RateLimiter

START = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.time)
    return fake


@pytest.fixture
def redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.flushall()


@pytest.fixture
def limiter(redis: fakeredis.FakeRedis, clock: Clock) -> RateLimiter:
    return RateLimiter(redis, sleep=clock.sleep)


def granted(limiter: RateLimiter, key: str, limit: Limit) -> bool:
    try:
        limiter.acquire(key, limit, max_wait=0)
    except WaitForTurn:
        return False
    return True


def test_a_window_allows_its_count_then_refuses_until_the_oldest_call_leaves_it(
    limiter: RateLimiter, clock: Clock
) -> None:
    three_a_second = Limit(3, 1)
    # given three calls, spread over half a second
    for _ in range(3):
        assert granted(limiter, "stripe:crd_1", three_a_second)
        clock.now += 0.25
    # then a fourth within the same second waits for the first to be a second old
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("stripe:crd_1", three_a_second, max_wait=0)
    assert raised.value.retry_after == pytest.approx(0.25)
    assert raised.value.key == "stripe:crd_1"
    # a moving window, not a clock second: just before the first call leaves, still no
    clock.now = START + 1 - 0.001
    assert not granted(limiter, "stripe:crd_1", three_a_second)
    clock.now = START + 1.001
    assert granted(limiter, "stripe:crd_1", three_a_second)
    assert not granted(limiter, "stripe:crd_1", three_a_second)
    assert clock.slept == []  # max_wait=0: never sleeps


def test_no_window_of_the_period_ever_holds_more_than_the_count(
    limiter: RateLimiter, clock: Clock
) -> None:
    # callers ask at irregular times for a minute (bursts and lulls), sleeping nowhere
    limit = Limit(7, 1)
    rng = random.Random(11)
    grants = []
    while clock.now < START + 60:
        clock.now += rng.choice([0.002, 0.002, 0.01, 0.05, 0.3, 0.8])
        if granted(limiter, "k", limit):
            grants.append(clock.now)
    assert most_in_any_window(grants, 1.0) == 7  # reached, never passed
    assert len(grants) > 7 * 30  # and the limit is used, not just respected


def most_in_any_window(stamps: list[float], seconds: float) -> int:
    """The most stamps any half-open window [t, t + seconds) holds; windows starting at
    a stamp are enough to find it."""
    stamps = sorted(stamps)
    return max(
        sum(1 for other in stamps[i:] if other < start + seconds) for i, start in enumerate(stamps)
    )


def test_a_short_wait_is_slept_in_process(limiter: RateLimiter, clock: Clock) -> None:
    limit = Limit(2, 1)
    limiter.acquire("k", limit, max_wait=0)
    clock.now += 0.4
    limiter.acquire("k", limit, max_wait=0)
    # the third waits 0.6 s for the first to leave the window: within max_wait, so it sleeps
    limiter.acquire("k", limit, max_wait=1)
    assert sum(clock.slept) == pytest.approx(0.6, abs=0.002)
    # the fourth would wait 0.4 s more: past a max_wait of 0.3 it raises instead
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("k", limit, max_wait=0.3)
    assert raised.value.retry_after == pytest.approx(0.4, abs=0.002)


def test_max_wait_counts_every_sleep_of_one_acquire(limiter: RateLimiter, clock: Clock) -> None:
    limit = Limit(1, 1)
    limiter.acquire("k", limit, max_wait=0)
    limiter.push_back("k", 0.5)
    # half a second pushed back, then the window's second: 1 s in all, more than 0.8
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("k", limit, max_wait=0.8)
    assert clock.slept == [pytest.approx(0.5)]
    assert raised.value.retry_after == pytest.approx(0.5)


def test_keys_and_limits_are_independent(limiter: RateLimiter) -> None:
    one = Limit(1, 60)
    assert granted(limiter, "stripe:crd_1", one)
    assert not granted(limiter, "stripe:crd_1", one)
    assert granted(limiter, "stripe:crd_2", one)
    assert granted(limiter, "paddle:crd_1", one)
    # Paddle: 240/minute per client and 20/hour per subscription, each a key of its own
    assert granted(limiter, "paddle:crd_1:sub_9", Limit(20, 3600))


def test_a_push_back_stops_every_limiter_on_the_key_until_it_runs_out(
    redis: fakeredis.FakeRedis, clock: Clock
) -> None:
    mine, another_process = (RateLimiter(redis, sleep=clock.sleep) for _ in range(2))
    roomy = Limit(100, 1)
    assert granted(mine, "stripe:crd_1", roomy)
    # when a 429 says Retry-After: 30
    mine.push_back("stripe:crd_1", 30)
    # then nobody takes a turn on that key for 30 s, though its window has room
    with pytest.raises(WaitForTurn) as raised:
        another_process.acquire("stripe:crd_1", roomy, max_wait=5)
    assert raised.value.retry_after == pytest.approx(30)
    assert granted(another_process, "stripe:crd_2", roomy)  # other keys go on
    clock.now += 29.9
    assert not granted(another_process, "stripe:crd_1", roomy)
    clock.now += 0.2
    assert granted(another_process, "stripe:crd_1", roomy)


def test_a_push_back_of_a_credential_stops_each_of_its_endpoints(limiter: RateLimiter) -> None:
    # Stripe: a window per endpoint; a 429 pushes the whole credential back
    limit = Limit(25, 1)
    invoices, items = "stripe:crd_1 POST /v1/invoices", "stripe:crd_1 POST /v1/invoiceitems"
    assert granted_in(limiter, invoices, limit, scope="stripe:crd_1")
    limiter.push_back("stripe:crd_1", 2)
    for endpoint in (invoices, items):
        with pytest.raises(WaitForTurn) as raised:
            limiter.acquire(endpoint, limit, max_wait=0, scope="stripe:crd_1")
        assert raised.value.retry_after == pytest.approx(2)
    # another credential's endpoints, and a narrower push-back, touch no one else
    assert granted_in(limiter, "stripe:crd_2 POST /v1/invoices", limit, scope="stripe:crd_2")
    limiter.push_back("stripe:crd_2 POST /v1/invoices", 5)
    assert granted_in(limiter, "stripe:crd_2 POST /v1/invoiceitems", limit, scope="stripe:crd_2")


def granted_in(limiter: RateLimiter, key: str, limit: Limit, *, scope: str) -> bool:
    try:
        limiter.acquire(key, limit, max_wait=0, scope=scope)
    except WaitForTurn:
        return False
    return True


def test_a_shorter_push_back_never_shortens_a_longer_one(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.push_back("k", 60)
    limiter.push_back("k", 1)
    clock.now += 30
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("k", Limit(10, 1), max_wait=0)
    assert raised.value.retry_after == pytest.approx(30)
    limiter.push_back("k", 45)  # a longer one does lengthen it
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("k", Limit(10, 1), max_wait=0)
    assert raised.value.retry_after == pytest.approx(45)


def test_a_push_back_is_at_most_an_hour_and_nothing_for_no_time(
    limiter: RateLimiter, redis: fakeredis.FakeRedis
) -> None:
    limiter.push_back("k", 0)
    limiter.push_back("k", -5)
    assert granted(limiter, "k", Limit(10, 1))
    limiter.push_back("k", 86_400)
    with pytest.raises(WaitForTurn) as raised:
        limiter.acquire("k", Limit(10, 1), max_wait=0)
    assert raised.value.retry_after == pytest.approx(MAX_PUSH_BACK_SECONDS)


def test_every_key_lives_under_the_namespace(
    limiter: RateLimiter, redis: fakeredis.FakeRedis
) -> None:
    limiter.acquire("stripe:crd_1", Limit(25, 1), max_wait=0)
    limiter.push_back("stripe:crd_1", 5)
    keys = sorted(key.decode() for key in redis.keys("*"))
    assert keys == [
        f"{KEY_PREFIX}:blocked/stripe:crd_1",
        f"{KEY_PREFIX}:window/stripe:crd_1/25/1/second",
    ]
    assert KEY_PREFIX == "meterbridge:ratelimit"


def test_an_unreachable_store_is_a_transient_error_not_a_free_pass(clock: Clock) -> None:
    from domain.errors import TransientError

    nowhere = RateLimiter.from_url("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(TransientError, match="rate limit store is unavailable") as raised:
        nowhere.acquire("k", Limit(1, 1), max_wait=0)
    assert not isinstance(raised.value, WaitForTurn)
