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

A short wait is slept in-process (``max_wait``); a longer one raises ``WaitForTurn``, which
the spine retries when the turn comes without using an attempt. Keys in Redis:

    meterbridge:ratelimit:window/<key>/<count>/<period>/second   the window (a list)
    meterbridge:ratelimit:blocked/<key>                          a push-back (TTL)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from domain.errors import TransientError, WaitForTurn
from domain.ratelimits import Limit

KEY_PREFIX = "meterbridge:ratelimit"
#: A ``Retry-After`` beyond this is taken as this: one bad answer must not stop a
#: credential for a day.
MAX_PUSH_BACK_SECONDS = 3600.0
#: The least a refused caller waits before asking again (the window's edge is exclusive).
MIN_WAIT_SECONDS = 0.001

# Lengthen a push-back, never shorten one: the longest Retry-After seen wins.
_PUSH_BACK = """
local ms = tonumber(ARGV[1])
if redis.call('pttl', KEYS[1]) < ms then
    redis.call('set', KEYS[1], '1', 'PX', ms)
end
"""


class RateLimiter:
    """Takes turns under shared limits. One per worker process (``workers.runtime``)."""

    def __init__(self, client: redis.Redis, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        storage = RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix=KEY_PREFIX
        )
        self._window = MovingWindowRateLimiter(storage)
        self._push_back = client.register_script(_PUSH_BACK)
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
        blocked = [_blocked_key(key)] if scope is None else [_blocked_key(key), _blocked_key(scope)]
        waited = 0.0
        while True:
            wait = self._wait_needed(key, limit, blocked)
            if wait is None:
                return
            if waited + wait > max_wait:
                raise WaitForTurn(retry_after=wait, key=key)
            self._sleep(wait)
            waited += wait

    def push_back(self, key: str, seconds: float) -> None:
        """Nobody takes a place for ``key`` for ``seconds`` (a 429's ``Retry-After``),
        under any limit; a longer push-back already in force stays."""
        seconds = min(seconds, MAX_PUSH_BACK_SECONDS)
        if seconds <= 0:
            return
        try:
            self._push_back(keys=[_blocked_key(key)], args=[max(1, round(seconds * 1000))])
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def _wait_needed(self, key: str, limit: Limit, blocked: list[str]) -> float | None:
        """None when a place was taken; else how long until one may be free."""
        item = RateLimitItemPerSecond(limit.count, limit.period_seconds, namespace="window")
        try:
            pipe = self._client.pipeline(transaction=False)
            for blocked_key in blocked:
                pipe.pttl(blocked_key)
            blocked_ms = max(cast(list[int], pipe.execute()))
            if blocked_ms > 0:
                return blocked_ms / 1000
            if self._window.hit(item, key):
                return None
            reset_at, _ = self._window.get_window_stats(item, key)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return max(reset_at - time.time(), MIN_WAIT_SECONDS)


def _blocked_key(key: str) -> str:
    return f"{KEY_PREFIX}:blocked/{key}"


def _unavailable(exc: redis.RedisError) -> TransientError:
    # Never send unmetered: without the store, the call waits like any outage.
    return TransientError(f"the rate limit store is unavailable: {type(exc).__name__}: {exc}")


__all__ = ["KEY_PREFIX", "RateLimiter"]
