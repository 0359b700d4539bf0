"""Turns for a destination that limits each remote organisation (a Xero tenant, a
QuickBooks company, a NetSuite account) by calls per period and by calls at once, shared
by every worker process (``workers.ratelimits.RateLimiter``):

    <scope>                 what a 429 pushes back, for every worker
    <scope>:<n>/<period>    each window, e.g. "xero:<tenant>:60/60"
    <scope>:at-once         the concurrency cap's leases

A call holds a lease (one of ``cap`` places) while it is in flight, and takes a place in
every window right before it is sent. The lease expires ``lease_seconds`` after it was
taken if the worker dies mid-call, so a killed worker never holds a place for long.

An attempt's first call waits in the worker at most ``FIRST_WAIT_SECONDS``: a busy limit
gives the worker back (``WaitForTurn``: a wait, not a failure). Once an attempt has begun,
each further call waits up to ``LATER_WAIT_SECONDS``, so that a busy limit cannot make a
run start over and over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from workers.ratelimits import RateLimiter

FIRST_WAIT_SECONDS = 1.0
LATER_WAIT_SECONDS = 30.0
#: How long a 429 without ``Retry-After`` holds the scope back.
DEFAULT_PUSH_BACK_SECONDS = 5.0


class RemoteLimited(Exception):
    """The destination answered 429 (its own count, not ours, was full)."""

    def __init__(self, retry_after: float | None, problem: str = "") -> None:
        super().__init__(f"429 {problem}".strip())
        self.retry_after = retry_after
        self.problem = problem


class TenantTurns:
    def __init__(
        self,
        limiter: RateLimiter,
        scope: str,
        windows: Sequence[Limit],
        cap: int | None,
        *,
        lease_seconds: float,
    ) -> None:
        self._limiter = limiter
        self.scope = scope
        self._windows = list(windows)
        self._cap = cap
        self._lease_seconds = lease_seconds
        self._begun = False

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold a turn for one call: a lease for its duration, a place in each window."""
        budget = LATER_WAIT_SECONDS if self._begun else FIRST_WAIT_SECONDS
        if self._cap is None:
            self._take_windows(budget)
            self._begun = True
            yield
            return
        with self._limiter.lease(
            f"{self.scope}:at-once",
            self._cap,
            ttl=self._lease_seconds,
            max_wait=budget,
            scope=self.scope,
        ):
            self._take_windows(budget)
            self._begun = True
            yield

    def _take_windows(self, budget: float) -> None:
        for limit in self._windows:
            key = f"{self.scope}:{limit.count}/{limit.period_seconds}"
            self._limiter.acquire(key, limit, max_wait=budget, scope=self.scope)

    @contextmanager
    def pushed_back_by_429(self) -> Iterator[None]:
        """A 429 inside holds the scope back for every worker by its ``Retry-After``,
        and leaves as a ``WaitForTurn`` for that long."""
        try:
            yield
        except RemoteLimited as limited:
            seconds = limited.retry_after or DEFAULT_PUSH_BACK_SECONDS
            self._limiter.push_back(self.scope, seconds)
            raise WaitForTurn(retry_after=seconds, key=self.scope) from limited
