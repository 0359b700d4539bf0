"""A worker process in miniature for the shared rate limit tests: it presses one key as
hard as the limiter lets it and reports every place it was given. Kept apart from the
tests so that a spawned process imports only the limiter."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from workers.ratelimits import RateLimiter


@dataclass(frozen=True, slots=True)
class Report:
    pid: int
    #: For each place: (the limiter's last look at the window began, the place was taken).
    #: The place's own time lies between the two.
    grants: list[tuple[float, float]]
    refusals: int


def hammer(
    url: str,
    key: str,
    limit: Limit,
    max_wait: float,
    seconds: float,
    start: Event,
    reports: Queue[Report],
) -> None:
    """Take places on ``key`` for ``seconds`` after ``start``; a ``WaitForTurn`` is slept
    out here, as a task's retry would wait, and counted."""
    last_look = [0.0]

    def sleep(wait: float) -> None:  # the limiter's in-process wait; it looks again after
        time.sleep(wait)
        last_look[0] = time.time()

    limiter = RateLimiter.from_url(url, sleep=sleep)
    grants: list[tuple[float, float]] = []
    refusals = 0
    start.wait(60)
    until = time.time() + seconds
    while time.time() < until:
        last_look[0] = time.time()
        try:
            limiter.acquire(key, limit, max_wait=max_wait)
        except WaitForTurn as wait:
            refusals += 1
            time.sleep(min(wait.retry_after, max(0.0, until - time.time())))
            continue
        grants.append((last_look[0], time.time()))
    reports.put(Report(os.getpid(), grants, refusals))
