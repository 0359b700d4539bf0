"""When to try again: exponential backoff with full jitter, capped, honouring the other
side's ``Retry-After``; and when to give up. Waiting for a turn under a rate limit is no
failure: it is retried when the turn comes, without using an attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import PermanentError, TransientError, WaitForTurn

#: Waits for a turn are spread over up to this fraction more, so that runs that hit a full
#: window together do not all come back at the instant it has one free place.
WAIT_SPREAD = 0.1
#: The longest ``Retry-After`` a scheduled policy honours, however short its schedule.
RETRY_AFTER_FLOOR_CAP = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter by default; or, with a ``schedule``, fixed
    delays (the n-th retry waits ``schedule[n-1]``, each spread by ±``spread``), one
    attempt more than the schedule has delays (outbound webhooks' policy)."""

    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    max_attempts: int = 8
    schedule: tuple[float, ...] = ()
    spread: float = 0.0

    @classmethod
    def scheduled(cls, delays: tuple[float, ...], spread: float) -> RetryPolicy:
        """A ``Retry-After`` is honoured up to the longest delay, and at least an hour."""
        cap = max(max(delays, default=0.0) * (1 + spread), RETRY_AFTER_FLOOR_CAP)
        return cls(cap_seconds=cap, max_attempts=len(delays) + 1, schedule=delays, spread=spread)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter (uniform in [0, min(cap, base * 2^(attempt-1))]) spreads a herd of
        retries, or the schedule's delay ±``spread``; a ``retry_after`` from the other side
        is a floor, clamped to the cap.
        """
        if self.schedule:
            planned = self.schedule[min(attempt, len(self.schedule)) - 1]
            delay = planned * rng.uniform(1 - self.spread, 1 + self.spread)
        else:
            ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
            delay = rng.uniform(0, ceiling)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.cap_seconds))
        return delay


@dataclass(frozen=True, slots=True)
class Retry:
    delay_seconds: float
    at: datetime
    #: False for a wait for a turn (``WaitForTurn``): the attempt is given back.
    uses_attempt: bool = True


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str  # "permanent" or "exhausted"


Decision = Retry | GiveUp


def decide(
    policy: RetryPolicy,
    error: BaseException,
    attempt: int,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """Anything that is not a ``PermanentError`` is retried: unexpected exceptions are
    usually passing (a lock, a restart), and a bug fixed by a deploy then heals itself.
    A ``WaitForTurn`` is retried when its turn comes (capped), whatever the attempt."""
    if isinstance(error, PermanentError):
        return GiveUp("permanent")
    if isinstance(error, WaitForTurn):
        spread = 1 + (rng or random.Random()).uniform(0, WAIT_SPREAD)  # noqa: S311
        delay = min(policy.cap_seconds, error.retry_after * spread)
        return Retry(delay, now + timedelta(seconds=delay), uses_attempt=False)
    if attempt >= policy.max_attempts:
        return GiveUp("exhausted")
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    delay = policy.delay(attempt, retry_after, rng or random.Random())  # noqa: S311
    return Retry(delay, now + timedelta(seconds=delay))
