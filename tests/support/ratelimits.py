"""Worker processes in miniature for the shared rate limit tests: ``hammer`` presses one
key as hard as the limiter lets it and reports every place it was given; ``hold_places``
does the same with leases, holding each place a while; ``die_holding`` takes a lease and
waits to be killed. Kept apart from the tests so that a spawned process imports only the
limiter."""

from __future__ import annotations

import os
import random
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


@dataclass(frozen=True, slots=True)
class Held:
    pid: int
    #: For each lease: (its block began, its block was about to end). The place was held
    #: for all of that interval, and a little more on each side.
    held: list[tuple[float, float]]
    refusals: int


def hold_places(
    url: str,
    key: str,
    cap: int,
    max_wait: float,
    seconds: float,
    start: Event,
    reports: Queue[Held],
) -> None:
    """Hold one of ``cap`` places of ``key`` for 10 to 50 ms, again and again for
    ``seconds`` after ``start``. A ``WaitForTurn`` is counted and asked again at once:
    the test is of the cap, not of how long a task's retry waits."""
    limiter = RateLimiter.from_url(url)
    rng = random.Random(os.getpid())
    held: list[tuple[float, float]] = []
    refusals = 0
    start.wait(60)
    until = time.time() + seconds
    while time.time() < until:
        try:
            with limiter.lease(key, cap, ttl=30, max_wait=max_wait):
                began = time.time()
                time.sleep(rng.uniform(0.01, 0.05))
                held.append((began, time.time()))
        except WaitForTurn:
            refusals += 1
    reports.put(Held(os.getpid(), held, refusals))


def die_holding(
    url: str, key: str, cap: int, ttl: float, holding: Queue[tuple[float, float]]
) -> None:
    """Take one of ``cap`` places of ``key`` for ``ttl`` seconds, say when (the take
    began, it was done), and wait inside the lease to be killed."""
    limiter = RateLimiter.from_url(url)
    before = time.time()
    with limiter.lease(key, cap, ttl=ttl, max_wait=10):
        holding.put((before, time.time()))
        time.sleep(60)
