"""The shared rate limiter on a fake Redis (with Lua, as the real one runs its scripts),
on a clock the test moves: the limiter, the ``limits`` package and the fake Redis all
read ``time.time`` (the fake's ``TIME``, which the lease scripts read, and its key
expiries too), and the limiter's sleeps move it on."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import fakeredis
import pytest
import redis as redis_errors

from domain.errors import TransientError, WaitForTurn
from domain.ratelimits import Limit
from workers.ratelimits import (
    KEY_PREFIX,
    LEASE_POLL_SECONDS,
    LEASE_RETRY_SECONDS,
    MAX_PUSH_BACK_SECONDS,
    Lease,
    RateLimiter,
)

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
    with limiter.lease("xero:tenant_1", 5, ttl=30, max_wait=0):
        keys = sorted(key.decode() for key in redis.keys("*"))
    assert keys == [
        f"{KEY_PREFIX}:blocked/stripe:crd_1",
        f"{KEY_PREFIX}:lease/xero:tenant_1",
        f"{KEY_PREFIX}:window/stripe:crd_1/25/1/second",
    ]
    assert KEY_PREFIX == "meterbridge:ratelimit"


def test_an_unreachable_store_is_a_transient_error_not_a_free_pass(clock: Clock) -> None:
    nowhere = RateLimiter.from_url("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(TransientError, match="rate limit store is unavailable") as raised:
        nowhere.acquire("k", Limit(1, 1), max_wait=0)
    assert not isinstance(raised.value, WaitForTurn)
    calls: list[str] = []
    with pytest.raises(TransientError, match="rate limit store is unavailable") as raised:
        call_under_lease(nowhere, "k", calls)
    assert not isinstance(raised.value, WaitForTurn)
    assert calls == []  # never unmetered


def call_under_lease(
    limiter: RateLimiter, key: str, calls: list[str], *, then: Callable[[], None] = lambda: None
) -> None:
    """A call in flight under a lease of the only place of ``key``: appends to ``calls``,
    then does ``then`` (which may raise)."""
    with limiter.lease(key, 1, ttl=30, max_wait=0):
        calls.append(key)
        then()


# Leases: a cap on calls at once, not per period.


def leased(limiter: RateLimiter, key: str, cap: int, ttl: float = 30) -> bool:
    """Whether a lease is given at once; given back at once if so."""
    try:
        with limiter.lease(key, cap, ttl=ttl, max_wait=0):
            return True
    except WaitForTurn:
        return False


class Hold(Protocol):
    def __call__(self, limiter: RateLimiter, key: str, cap: int, ttl: float = 30) -> Lease: ...


@pytest.fixture
def hold() -> Iterator[Hold]:
    """Takes a lease and never gives it back, as a worker that dies holding it. (Kept
    referenced: a context manager collected mid-block would close and give it back.)"""
    never_exited: list[AbstractContextManager[Lease]] = []

    def hold(limiter: RateLimiter, key: str, cap: int, ttl: float = 30) -> Lease:
        lease = limiter.lease(key, cap, ttl=ttl, max_wait=0)
        never_exited.append(lease)
        return lease.__enter__()

    yield hold
    never_exited.clear()


def test_a_lease_cap_holds_that_many_calls_at_once_and_a_place_given_back_lets_one_in(
    limiter: RateLimiter, clock: Clock, hold: Hold
) -> None:
    # given three calls in flight under a cap of three
    with limiter.lease("xero:tenant_1", 3, ttl=30, max_wait=0):
        hold(limiter, "xero:tenant_1", 3)
        hold(limiter, "xero:tenant_1", 3)
        # then a fourth has no place, however long the others have been in flight
        clock.now += 20
        assert not leased(limiter, "xero:tenant_1", 3)
        assert leased(limiter, "xero:tenant_2", 3)  # other keys go on
    # when one call ends, its place is free for one more, and only one
    hold(limiter, "xero:tenant_1", 3)
    assert not leased(limiter, "xero:tenant_1", 3)
    assert clock.slept == []


def test_the_place_of_a_holder_that_died_is_free_after_its_ttl_not_before(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock, hold: Hold
) -> None:
    # given two places: one held by a long call, one by a worker that took it for 10 s
    # and died without giving it back
    with limiter.lease("qbo:company_1", 2, ttl=60, max_wait=0):
        hold(limiter, "qbo:company_1", 2, ttl=10)
        # then its place stays taken for its ttl
        clock.now = START + 10 - 0.001
        with pytest.raises(WaitForTurn) as raised:
            limiter.lease("qbo:company_1", 2, ttl=10, max_wait=0).__enter__()
        assert raised.value.retry_after == pytest.approx(0.001)
        # and is free once it expires, though the other place is still held
        clock.now = START + 10
        assert leased(limiter, "qbo:company_1", 2)
    # when nobody holds a place any more, the key itself is gone
    hold(limiter, "qbo:company_1", 1, ttl=5)
    clock.now += 5.001
    assert redis.keys("*") == []


def test_the_set_of_places_lives_as_long_as_its_longest_lease(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock, hold: Hold
) -> None:
    hold(limiter, "k", 5, ttl=60)
    hold(limiter, "k", 5, ttl=5)  # a shorter lease after it does not cut the longer one
    assert redis.pttl(f"{KEY_PREFIX}:lease/k") == 60_000
    clock.now += 59
    assert not leased(limiter, "k", 1)  # the long one still holds its place


def test_a_lease_waits_in_process_looking_again_often_and_takes_a_place_given_back(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock
) -> None:
    # given the only place, held by a call that ends 0.33 s later
    other = limiter.lease("k", 1, ttl=30, max_wait=0)
    other.__enter__()
    ends_at = START + 0.33

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= ends_at:
            other.__exit__(None, None, None)

    waiting = RateLimiter(redis, sleep=sleep)
    # when another caller waits for it
    with waiting.lease("k", 1, ttl=30, max_wait=5):
        # then it got it within one look of its release, never napping longer than that
        assert ends_at <= clock.now < ends_at + LEASE_POLL_SECONDS + 1e-9
        assert max(clock.slept) <= LEASE_POLL_SECONDS


def test_a_lease_that_waits_for_an_expiry_wakes_when_it_comes(
    limiter: RateLimiter, clock: Clock, hold: Hold
) -> None:
    hold(limiter, "k", 1, ttl=0.12)
    with limiter.lease("k", 1, ttl=30, max_wait=1):
        assert clock.now - START == pytest.approx(0.12)


def test_a_lease_past_max_wait_raises_wait_for_turn_with_when_to_look_again(
    limiter: RateLimiter, clock: Clock, hold: Hold
) -> None:
    hold(limiter, "k", 2, ttl=30)
    hold(limiter, "k", 2, ttl=30)
    # a caller willing to wait 0.3 s looks again for all of it, then gives up
    with pytest.raises(WaitForTurn) as raised:
        limiter.lease("k", 2, ttl=30, max_wait=0.3).__enter__()
    assert sum(clock.slept) == pytest.approx(0.3, abs=0.002)
    assert raised.value.key == "k"
    # a place may be given back any time; it is certain only at an expiry 29.7 s away:
    # the retry looks again after a second, not half a minute
    assert raised.value.retry_after == pytest.approx(LEASE_RETRY_SECONDS)
    # after its own max_wait again, if that is longer (it was patient for that long)
    with pytest.raises(WaitForTurn) as raised:
        limiter.lease("k", 2, ttl=30, max_wait=5).__enter__()
    assert raised.value.retry_after == pytest.approx(5)
    # and when the earliest expiry is sooner, then
    clock.now = START + 29.8
    with pytest.raises(WaitForTurn) as raised:
        limiter.lease("k", 2, ttl=30, max_wait=0).__enter__()
    assert raised.value.retry_after == pytest.approx(0.2)


def test_a_push_back_stops_leases_of_the_key_too(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock
) -> None:
    # when a 429 pushes the tenant back 30 s, though it has places free
    limiter.push_back("xero:tenant_1", 30)
    with pytest.raises(WaitForTurn) as raised:
        limiter.lease("xero:tenant_1", 5, ttl=30, max_wait=5).__enter__()
    # then a lease waits it out whole: no place is taken, no nap is wasted on it
    assert raised.value.retry_after == pytest.approx(30)
    assert clock.slept == []
    assert redis.exists(f"{KEY_PREFIX}:lease/xero:tenant_1") == 0
    assert leased(limiter, "xero:tenant_2", 5)
    # a push-back within max_wait is slept out, then the place taken
    clock.now += 29.5
    with limiter.lease("xero:tenant_1", 5, ttl=30, max_wait=1):
        assert clock.slept == [pytest.approx(0.5)]


def test_a_push_back_of_a_scope_stops_leases_of_its_narrower_keys(limiter: RateLimiter) -> None:
    # a tenant's 429 pushes the tenant back; its concurrency cap is a key of its own
    limiter.push_back("xero:tenant_1", 2)
    lease = limiter.lease("xero:tenant_1:at-once", 5, ttl=30, max_wait=0, scope="xero:tenant_1")
    with pytest.raises(WaitForTurn) as raised:
        lease.__enter__()
    assert raised.value.retry_after == pytest.approx(2)
    assert leased(limiter, "xero:tenant_2:at-once", 5)


def test_a_push_back_that_comes_while_a_lease_waits_stops_it(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock, hold: Hold
) -> None:
    hold(limiter, "k", 1, ttl=30)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        limiter.push_back("k", 60)

    waiting = RateLimiter(redis, sleep=sleep)
    with pytest.raises(WaitForTurn) as raised:
        waiting.lease("k", 1, ttl=30, max_wait=10).__enter__()
    assert raised.value.retry_after == pytest.approx(60)
    assert len(clock.slept) == 1


def test_a_call_that_raises_gives_its_place_back(limiter: RateLimiter) -> None:
    def fail() -> None:
        assert not leased(limiter, "k", 1)  # held while in flight
        raise RuntimeError("the call failed")

    with pytest.raises(RuntimeError, match="the call failed"):
        call_under_lease(limiter, "k", [], then=fail)
    assert leased(limiter, "k", 1)


def test_a_store_lost_mid_call_does_not_replace_the_calls_outcome(clock: Clock) -> None:
    server = fakeredis.FakeServer()
    limiter = RateLimiter(fakeredis.FakeRedis(server=server), sleep=clock.sleep)

    def lose_the_store() -> None:
        server.connected = False

    def lose_the_store_and_fail() -> None:
        lose_the_store()
        raise RuntimeError("the call failed")

    # the call's own error comes out, not the store's
    with pytest.raises(RuntimeError, match="the call failed"):
        call_under_lease(limiter, "k", [], then=lose_the_store_and_fail)
    # and a call that succeeded does not fail for it
    server.connected = True
    clock.now += 30  # the places not given back expire by themselves
    call_under_lease(limiter, "k", [], then=lose_the_store)
    server.connected = True
    clock.now += 30
    assert leased(limiter, "k", 1)
    # a renewal without the store is a transient error: nobody knows if the place is ours
    with limiter.lease("k", 1, ttl=30, max_wait=0) as lease:
        server.connected = False
        with pytest.raises(TransientError, match="rate limit store is unavailable"):
            lease.renew()


def test_a_renewed_lease_keeps_its_place_past_its_ttl_and_a_lost_one_cannot(
    limiter: RateLimiter, redis: fakeredis.FakeRedis, clock: Clock, hold: Hold
) -> None:
    # given a call holding the only place for 10 s, still running at 8 s
    with limiter.lease("netsuite:acct_1", 1, ttl=10, max_wait=0) as lease:
        clock.now += 8
        # when it renews, it holds the place 10 s from now
        assert lease.renew()
        assert redis.pttl(f"{KEY_PREFIX}:lease/netsuite:acct_1") == 10_000
        clock.now += 9.9  # past the first ttl
        assert not leased(limiter, "netsuite:acct_1", 1)
        # when it lets its renewed ttl run out, the place is another's
        clock.now += 0.1
        taker = hold(limiter, "netsuite:acct_1", 1)
        # then a late renewal says the place was lost, and takes nothing back
        assert not lease.renew()
        assert not leased(limiter, "netsuite:acct_1", 1)
    # and its exit leaves the new holder's place alone
    assert not leased(limiter, "netsuite:acct_1", 1)
    assert taker.renew()


def test_a_renewal_after_the_ttl_is_refused_even_if_nobody_took_the_place(
    limiter: RateLimiter, clock: Clock, hold: Hold
) -> None:
    hold(limiter, "k", 2, ttl=60)  # keeps the set of places alive
    with limiter.lease("k", 2, ttl=10, max_wait=0) as lease:
        clock.now += 10
        assert not lease.renew()
        # and it does not count against the cap any more
        assert leased(limiter, "k", 2)


def test_a_lost_answer_to_a_take_is_a_transient_error_and_gives_the_place_back(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    take = limiter._take_lease

    def answer_lost(*args: object, **kwargs: object) -> object:
        take(*args, **kwargs)  # the place is taken, but the caller never hears it
        raise redis_errors.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(limiter, "_take_lease", answer_lost)
    calls: list[str] = []
    with pytest.raises(TransientError, match="rate limit store is unavailable") as raised:
        call_under_lease(limiter, "k", calls)
    assert not isinstance(raised.value, WaitForTurn)
    assert calls == []
    monkeypatch.undo()
    assert leased(limiter, "k", 1)


def test_a_lease_needs_a_cap_and_a_ttl(limiter: RateLimiter) -> None:
    for cap, ttl in ((0, 1.0), (True, 1.0), (2, 0.0), (2, -1.0), (2, float("nan"))):
        with pytest.raises(ValueError, match="lease"):
            limiter.lease("k", cap, ttl=ttl, max_wait=0).__enter__()
