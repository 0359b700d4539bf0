"""Turns under Stripe's rate limits, shared by every worker process of the deployment
(``workers.ratelimits.RateLimiter``, in the deployment's Redis):

    stripe:<credential id>:<endpoint>           each endpoint's window, e.g.
                                                "stripe:crd_1:POST /v1/invoiceitems"
                                                (the credential's ``requests_per_second``)
    stripe:<credential id>:<endpoint>:<slot>    one request's slot (below)
    stripe:<credential id>                      the credential: what a 429 pushes back

Stripe limits each endpoint (25 requests a second by default), so each endpoint has its
own window; keys are per credential, not per API key, so a rotated key keeps its windows.
Stripe's 429 does not say which limit it hit: it pushes the whole credential back by its
``Retry-After`` for every worker, and the run waits for its turn (``WaitForTurn``: a wait,
not a failure, using no attempt).

**Slots.** The window counts a request when its turn is taken; Stripe counts it when it
arrives, a few milliseconds later, and not always the same few. A window filled to the
brim would let a request go the instant a place frees, and reach Stripe less than a second
after the one whose place it took: one too many in that second, by Stripe's count. So each
endpoint's requests are also paced: time is cut into slots of ``(1 + margin) / rate``
seconds, a request claims a slot (its key, taken once: ``Limit(1, 1)``, atomic in Redis, so
two workers never share one) and goes at the slot's start. Any ``rate + 1`` requests then
span at least ``1 + margin`` seconds, ``margin`` being the room for jitter
(``METERBRIDGE_STRIPE_JITTER_MARGIN_SECONDS``, default 0.1 s: a request that must open a
TLS connection first arrives later than one on a pooled connection), at a cost of that
share of the rate; the window still holds the limit exactly. Slots come from the clock, so the
machines sharing a limit must keep their clocks in sync (NTP), as the window already needs.

An attempt's first turn waits in the worker at most ``FIRST_WAIT_SECONDS``: a busy limit
gives the worker back (``WaitForTurn``) rather than holding it. Once an attempt has begun it
waits up to ``LATER_WAIT_SECONDS`` for each further turn, so that a busy limit cannot make
a run start over and over, spending its first requests each time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from domain.destinations.stripe import StripeCredential
from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from workers.destinations.stripe.client import RateLimited
from workers.ratelimits import RateLimiter

FIRST_WAIT_SECONDS = 1.0
LATER_WAIT_SECONDS = 30.0
#: The room for network jitter unless given: ``rate + 1`` requests to one endpoint span at
#: least ``1 + DEFAULT_JITTER_MARGIN`` seconds.
DEFAULT_JITTER_MARGIN = 0.1
#: How long a 429 without ``Retry-After`` holds the credential back.
DEFAULT_PUSH_BACK_SECONDS = 1.0
#: A slot's key is taken once: it is never asked for again after its second.
_ONCE = Limit(1, 1)


class StripeTurns:
    """One attempt's turns."""

    def __init__(
        self,
        limiter: RateLimiter,
        credential_id: str,
        credential: StripeCredential,
        *,
        jitter_margin: float = DEFAULT_JITTER_MARGIN,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self.credential_key = f"stripe:{credential_id}"
        self._limit = Limit(credential.requests_per_second, 1)
        self.slot_seconds = (1 + jitter_margin) / credential.requests_per_second
        self._begun = False

    def endpoint_key(self, endpoint: str) -> str:
        return f"{self.credential_key}:{endpoint}"

    def take(self, endpoint: str) -> None:
        """``StripeClient.before_request``: a place for one request to ``endpoint``
        (``"POST /v1/invoiceitems"``), taken right before it is sent."""
        key = self.endpoint_key(endpoint)
        budget = LATER_WAIT_SECONDS if self._begun else FIRST_WAIT_SECONDS
        waited = 0.0
        slot = math.ceil(self._clock() / self.slot_seconds)
        while True:
            waited = self._wait(slot * self.slot_seconds - self._clock(), waited, budget, key)
            try:
                self._limiter.acquire(f"{key}:{slot}", _ONCE, max_wait=0)
                self._limiter.acquire(key, self._limit, max_wait=0, scope=self.credential_key)
                break
            except WaitForTurn as turn:
                if turn.key == key:  # the window is full, or pushed back by a 429
                    waited = self._wait(turn.retry_after, waited, budget, key)
                # else another worker has the slot; either way, the next slot from now
                slot = max(slot + 1, math.ceil(self._clock() / self.slot_seconds))
        self._begun = True

    def _wait(self, seconds: float, waited: float, budget: float, key: str) -> float:
        """Sleep ``seconds`` if the attempt's budget allows; the seconds waited so far."""
        if seconds <= 0:
            return waited
        if waited + seconds > budget:
            raise WaitForTurn(retry_after=seconds, key=key)
        self._sleep(seconds)
        return waited + seconds

    @contextmanager
    def pushed_back_by_429(self) -> Iterator[None]:
        """A 429 inside holds the credential back for every worker by its
        ``Retry-After``, and leaves as a ``WaitForTurn`` for that long."""
        try:
            yield
        except RateLimited as limited:
            seconds = limited.retry_after or DEFAULT_PUSH_BACK_SECONDS
            self._limiter.push_back(self.credential_key, seconds)
            raise WaitForTurn(retry_after=seconds, key=self.credential_key) from limited
