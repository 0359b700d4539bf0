"""Turns under Paddle's rate limits, shared by every worker process of the deployment
(``workers.ratelimits.RateLimiter``, in the deployment's Redis):

    paddle:<credential id>                                every request (``requests_per_minute``)
    paddle:<environment>:<subscription id>:immediate-charges
                                                          immediate charges
                                                          (``immediate_charges_per_hour``)

Paddle counts requests per client address, and the workers of a deployment reach it from
the deployment's: so the requests window lives in the deployment's Redis, where every
worker takes its turns, and is per credential (a credential's own ``requests_per_minute``).
Two Paddle credentials used from one address share Paddle's 240 a minute there while each
has its own window here: give them limits that add up to 240. Immediate charges are
counted per subscription, whichever credential makes them.

A 429 says whose limit it hit (``TooManyRequests.per_subscription``) and pushes that key
back by its ``Retry-After`` for every worker; the run then waits for its turn
(``WaitForTurn``): a wait, not a failure, using no attempt.

An attempt's first turn waits in the worker at most ``FIRST_WAIT_SECONDS``: a busy limit
gives the worker back (``WaitForTurn``) rather than holding it. Once an attempt has begun
it waits up to ``LATER_WAIT_SECONDS`` (one request window) for each further turn, so that
a tight limit cannot make it start over for ever, spending its first turns each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from domain.destinations.paddle import PaddleCredential
from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from workers.destinations.paddle.client import TooManyRequests
from workers.ratelimits import RateLimiter

FIRST_WAIT_SECONDS = 2.0
LATER_WAIT_SECONDS = 60.0
#: A 429 without ``Retry-After`` holds its key back this long (one request window).
DEFAULT_PUSH_BACK_SECONDS = 60.0


class PaddleTurns:
    """One attempt's turns."""

    def __init__(
        self, limiter: RateLimiter, credential_id: str, credential: PaddleCredential
    ) -> None:
        self._limiter = limiter
        self._environment = credential.environment.value
        self._requests = Limit(credential.requests_per_minute, 60)
        self._charges = Limit(credential.immediate_charges_per_hour, 3600)
        self.requests_key = f"paddle:{credential_id}"
        self._begun = False

    def charges_key(self, subscription_id: str) -> str:
        return f"paddle:{self._environment}:{subscription_id}:immediate-charges"

    def request(self, _endpoint: str) -> None:
        """``PaddleClient.before_request``: a turn for every request, pages included."""
        self._take(self.requests_key, self._requests)

    def immediate_charge(self, subscription_id: str) -> None:
        """A turn for one immediate charge of the subscription, before its request's."""
        self._take(self.charges_key(subscription_id), self._charges)

    def _take(self, key: str, limit: Limit) -> None:
        wait = LATER_WAIT_SECONDS if self._begun else FIRST_WAIT_SECONDS
        self._limiter.acquire(key, limit, max_wait=wait)
        self._begun = True

    @contextmanager
    def pushed_back_by_429(self, subscription_id: str) -> Iterator[None]:
        """A 429 inside holds its key back for every worker by its ``Retry-After``, and
        leaves as a ``WaitForTurn`` for that long."""
        try:
            yield
        except TooManyRequests as refused:
            per_subscription = refused.per_subscription
            key = self.charges_key(subscription_id) if per_subscription else self.requests_key
            seconds = refused.retry_after or DEFAULT_PUSH_BACK_SECONDS
            self._limiter.push_back(key, seconds)
            raise WaitForTurn(retry_after=seconds, key=key) from refused
