"""Rate limits shared by every worker process of a deployment, kept in Redis.

A limit (``domain.ratelimits.Limit``) is enforced as a moving window by the ``limits``
package over its Redis storage: each call it allows leaves its time in a Redis list for
the key, and a call is allowed only while fewer than ``count`` of those times lie within
the last ``period_seconds``; the check and the entry are one Lua script, so however many
processes ask at once, no window of that length ever holds more than ``count`` calls.
(The times are the callers' clocks: machines sharing a limit must keep them in sync, as
NTP does to within milliseconds.)

A 429 answer pushes the key back: ``push_back`` sets a Redis key with the answer's
``Retry-After`` as its TTL, and every ``acquire`` of that key (or of a narrower key in its
``scope``: one endpoint of a credential), in any process, waits it out first.

Some destinations limit calls *at once* instead (Xero: 5 per tenant, QuickBooks: 10 per
company, NetSuite: as many as the account's licence): ``lease`` holds one of at most
``cap`` places of a key while a call is in flight and gives it back when the call ends,
raised or not. A place is a member of a sorted set whose score is its expiry: a worker
that dies mid-call (SIGKILL, a lost machine) never gives its place back, so the place is
free once ``ttl`` seconds pass, unless its holder renews it (``Lease.renew``, for a call
longer than the TTL). Taking a place is one Lua script (drop the expired places, count,
add ours), so no number of processes ever holds more than ``cap`` at once; expiries are
on Redis's clock (``TIME``), so a worker's clock skew cannot stretch or shorten a TTL.
A push-back of the key (or of its ``scope``) stops its leases as it stops ``acquire``.
Nobody knows when a holder will give its place back, so a waiting lease looks again
every ``LEASE_POLL_SECONDS`` (or when the earliest place expires, if sooner).

A short wait is slept in-process (``max_wait``); a longer one raises ``WaitForTurn``, which
the spine retries when the turn comes without using an attempt. Keys in Redis:

    meterbridge:ratelimit:window/<key>/<count>/<period>/second   the window (a list)
    meterbridge:ratelimit:blocked/<key>                          a push-back (TTL)
    meterbridge:ratelimit:lease/<key>                            the places held (a sorted
                                                                 set: lease id -> expiry,
                                                                 ms on Redis's clock)

A set lives as long as its longest lease (PEXPIRE), so an idle key leaves nothing behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import redis
import structlog
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from domain.errors import TransientError, WaitForTurn
from domain.ratelimits import Limit

log = structlog.get_logger(__name__)

KEY_PREFIX = "meterbridge:ratelimit"
#: A ``Retry-After`` beyond this is taken as this: one bad answer must not stop a
#: credential for a day.
MAX_PUSH_BACK_SECONDS = 3600.0
#: The least a refused caller waits before asking again (the window's edge is exclusive).
MIN_WAIT_SECONDS = 0.001
#: A waiting lease looks again at least this often: a place given back is taken within it.
LEASE_POLL_SECONDS = 0.05
#: A lease that gives up waiting (``WaitForTurn``) asks to be retried after as long again
#: as it waited (``max_wait``), at least this, or when the earliest place expires if that
#: is sooner. The expiry is only the latest a place can stay taken: most are given back
#: when their call ends, which nobody can foretell.
LEASE_RETRY_SECONDS = 1.0

# Lengthen a push-back, never shorten one: the longest Retry-After seen wins.
_PUSH_BACK = """
local ms = tonumber(ARGV[1])
if redis.call('pttl', KEYS[1]) < ms then
    redis.call('set', KEYS[1], '1', 'PX', ms)
end
"""

# Milliseconds on Redis's clock, for the lease scripts (a write after TIME needs Redis 5 or
# later, which replicates a script's effects); and the set kept until its last place
# expires.
_LEASE_CLOCK = """
local time = redis.call('time')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function keep_until_last_expires()
    local last = redis.call('zrange', KEYS[1], -1, -1, 'withscores')
    redis.call('pexpire', KEYS[1], tonumber(last[2]) - now)
end
"""

# KEYS[1] the places; ARGV: lease id, cap, ttl in ms. 0 when the place is ours; else the
# ms until the earliest place expires (at least 1).
_TAKE_LEASE = (
    _LEASE_CLOCK
    + """
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
    keep_until_last_expires()
    return 0
end
local earliest = redis.call('zrange', KEYS[1], 0, 0, 'withscores')
return tonumber(earliest[2]) - now
"""
)

# KEYS[1] the places; ARGV: lease id, ttl in ms. 1 when the place was still ours and now
# expires ttl from now; 0 when it had expired (another may hold it now).
_RENEW_LEASE = (
    _LEASE_CLOCK
    + """
local expires = redis.call('zscore', KEYS[1], ARGV[1])
if not expires or tonumber(expires) <= now then
    return 0
end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
keep_until_last_expires()
return 1
"""
)


class RateLimiter:
    """Takes turns under shared limits. One per worker process (``workers.runtime``)."""

    def __init__(self, client: redis.Redis, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        storage = RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix=KEY_PREFIX
        )
        self._window = MovingWindowRateLimiter(storage)
        self._push_back = client.register_script(_PUSH_BACK)
        self._take_lease = client.register_script(_TAKE_LEASE)
        self._renew_lease = client.register_script(_RENEW_LEASE)
        self._sleep = sleep

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ) -> RateLimiter:
        """``url`` as ``Settings.rate_limit_redis_url`` gives it: ``redis://``,
        ``rediss://`` or ``redis+unix:///path``. Connects on first use."""
        if url.startswith("redis+unix://"):
            url = "unix://" + url.removeprefix("redis+unix://")
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, sleep=sleep)

    def acquire(self, key: str, limit: Limit, *, max_wait: float, scope: str | None = None) -> None:
        """Take one call's place under ``limit`` for ``key``, sleeping here while the
        wait is at most ``max_wait`` seconds in all; past that raise ``WaitForTurn`` with
        the seconds still to wait. A place once taken is used: take it right before the
        call. ``scope``: the key a 429 pushes back when ``key`` is narrower (the
        credential of a key that is one of its endpoints); its push-back stops this call
        too, as does one of ``key`` itself."""
        blocked = _blocked_keys(key, scope)
        patience = _Patience(key, max_wait, self._sleep)
        while (wait := self._wait_needed(key, limit, blocked)) is not None:
            patience.wait(wait)

    @contextmanager
    def lease(
        self, key: str, cap: int, *, ttl: float, max_wait: float, scope: str | None = None
    ) -> Iterator[Lease]:
        """Hold one of at most ``cap`` places of ``key`` for the block: a call in flight
        under a limit of calls at once. Waits here for a place while the wait is at most
        ``max_wait`` seconds in all, past that raises ``WaitForTurn``. The place is given
        back when the block ends, raised or not; if this process dies first, it is free
        ``ttl`` seconds after it was taken (or last renewed): make ``ttl`` longer than the
        call may take, or renew it (``Lease.renew``). A push-back of ``key`` stops it, as
        does one of ``scope``, as for ``acquire``."""
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"a lease's cap is a whole number of places from 1, not {cap!r}")
        if not ttl > 0:
            raise ValueError(f"a lease's ttl must be more than 0 seconds, not {ttl!r}")
        held = Lease(self, key, ttl)
        blocked = _blocked_keys(key, scope)
        patience = _Patience(key, max_wait, self._sleep)
        while True:
            pushed_back = self._pushed_back(blocked)
            if pushed_back is not None:
                patience.wait(pushed_back)
                continue
            until_free = self._take(held, cap)
            if until_free is None:
                break
            patience.poll(until_free)
        try:
            yield held
        finally:
            self._release(held)

    def push_back(self, key: str, seconds: float) -> None:
        """Nobody takes a place for ``key`` for ``seconds`` (a 429's ``Retry-After``),
        under any limit; a longer push-back already in force stays."""
        seconds = min(seconds, MAX_PUSH_BACK_SECONDS)
        if seconds <= 0:
            return
        try:
            self._push_back(keys=[_blocked_key(key)], args=[_milliseconds(seconds)])
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def _wait_needed(self, key: str, limit: Limit, blocked: list[str]) -> float | None:
        """None when a place was taken; else how long until one may be free."""
        pushed_back = self._pushed_back(blocked)
        if pushed_back is not None:
            return pushed_back
        item = RateLimitItemPerSecond(limit.count, limit.period_seconds, namespace="window")
        try:
            if self._window.hit(item, key):
                return None
            reset_at, _ = self._window.get_window_stats(item, key)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return max(reset_at - time.time(), MIN_WAIT_SECONDS)

    def _pushed_back(self, blocked: list[str]) -> float | None:
        """The seconds until the longest push-back of ``blocked`` ends; None if none is
        in force."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for blocked_key in blocked:
                pipe.pttl(blocked_key)
            blocked_ms = max(cast(list[int], pipe.execute()))
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return blocked_ms / 1000 if blocked_ms > 0 else None

    def _take(self, lease: Lease, cap: int) -> float | None:
        """None when ``lease`` took a place; else the seconds until the earliest place
        held expires."""
        try:
            until_free_ms = int(
                self._take_lease(
                    keys=[_lease_key(lease.key)], args=[lease.id, cap, _milliseconds(lease.ttl)]
                )
            )
        except redis.RedisError as exc:
            self._release(lease)  # the answer may be what was lost, not the place taken
            raise _unavailable(exc) from exc
        return None if until_free_ms == 0 else until_free_ms / 1000

    def _renew(self, lease: Lease) -> bool:
        try:
            renewed = self._renew_lease(
                keys=[_lease_key(lease.key)], args=[lease.id, _milliseconds(lease.ttl)]
            )
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return bool(renewed)

    def _release(self, lease: Lease) -> None:
        """Never raises: a store that is down must not replace the call's own outcome,
        and the place is then given back when it expires."""
        try:
            self._client.zrem(_lease_key(lease.key), lease.id)
        except redis.RedisError as exc:
            log.warning("ratelimit.lease_not_released", key=lease.key, error=str(exc))


class Lease:
    """One place among a key's calls at once, held from ``RateLimiter.lease``'s entry to
    its exit, or until ``ttl`` seconds pass without a ``renew``."""

    def __init__(self, limiter: RateLimiter, key: str, ttl: float) -> None:
        self._limiter = limiter
        self.key = key
        self.ttl = ttl
        #: The place's member in the set, unique to this lease.
        self.id = uuid.uuid4().hex

    def renew(self) -> bool:
        """Hold the place ``ttl`` seconds from now, for a call that runs longer than its
        TTL: True if it was still ours. False once it has expired, even if nobody has
        taken it yet: the cap no longer counts this call."""
        return self._limiter._renew(self)


class _Patience:
    """One caller's wait for a turn: sleeps while the waits add up to at most
    ``max_wait``; past that raises ``WaitForTurn``."""

    def __init__(self, key: str, max_wait: float, sleep: Callable[[float], None]) -> None:
        self._key = key
        self._max_wait = max_wait
        self._sleep = sleep
        self._waited = 0.0

    def wait(self, seconds: float) -> None:
        """A wait of known length (a window's edge, a push-back): all of it, or none."""
        if self._waited + seconds > self._max_wait:
            raise WaitForTurn(retry_after=seconds, key=self._key)
        self._sleep(seconds)
        self._waited += seconds

    def poll(self, until_free: float) -> None:
        """A wait of unknown length (for a place given back), at most ``until_free``: a
        short nap, and look again."""
        left = self._max_wait - self._waited
        if left < MIN_WAIT_SECONDS:
            retry_after = min(until_free, max(self._max_wait, LEASE_RETRY_SECONDS))
            raise WaitForTurn(retry_after=retry_after, key=self._key)
        nap = min(until_free, LEASE_POLL_SECONDS, left)
        self._sleep(nap)
        self._waited += nap


def _blocked_key(key: str) -> str:
    return f"{KEY_PREFIX}:blocked/{key}"


def _blocked_keys(key: str, scope: str | None) -> list[str]:
    """The push-backs that stop a turn of ``key``: its own, and its ``scope``'s."""
    return [_blocked_key(key)] if scope is None else [_blocked_key(key), _blocked_key(scope)]


def _lease_key(key: str) -> str:
    return f"{KEY_PREFIX}:lease/{key}"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _unavailable(exc: redis.RedisError) -> TransientError:
    # Never send unmetered: without the store, the call waits like any outage.
    return TransientError(f"the rate limit store is unavailable: {type(exc).__name__}: {exc}")


__all__ = ["KEY_PREFIX", "Lease", "RateLimiter"]
