"""One rate limit, several worker processes, the test run's real Redis: however hard the
processes press one key, no second ever holds more calls than the limit.

Each process records, for every place it was given, the interval in which the limiter
took it: from just before its last look at the window (the call's start, or the end of
its last sleep) to the return. The place's own time lies in that interval, so a window
holding more than the limit's count of whole intervals proves the limit broken; counting
the returns alone would blame the limiter for the scheduler's delays.

Leases likewise: several processes hold places of one key, each recording the interval
inside its ``with`` block, which its place covers; more than ``cap`` such intervals
overlapping at one instant proves the cap broken. And a process SIGKILLed while holding
a place keeps it until its TTL, and no longer.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from domain.errors import WaitForTurn
from domain.ratelimits import Limit
from domain.settings import Settings
from tests.support.ratelimits import Held, Report, die_holding, hammer, hold_places
from tests.support.servers import session_services
from workers.ratelimits import KEY_PREFIX, RateLimiter

LIMIT = Limit(5, 1)
SECONDS = 4.0
#: Half the processes wait for their turn in-process (a short wait), half give it up at
#: once as a task would (``WaitForTurn``) and come back when it says.
MAX_WAITS = (0.0, 1.0, 0.0, 1.0)


def most_in_any_window(grants: list[tuple[float, float]], seconds: float) -> int:
    """The most grants whose whole interval lies in one window of ``seconds``; windows
    starting where some interval starts are enough to find it."""
    return max(
        sum(1 for began, got in grants if began >= start and got <= start + seconds)
        for start, _ in grants
    )


@pytest.fixture
def url() -> str:
    """The test run's Redis, as the settings' rate limit URL spells it."""
    services = session_services()
    return Settings(
        _env_file=None, broker_url=services.redis_url, redis_url=""
    ).rate_limit_redis_url


@pytest.fixture
def key(url: str) -> Iterator[str]:
    """A key of the test's own; whatever the limiter kept for it is removed after."""
    key = f"test:{uuid.uuid4().hex}"
    yield key
    client = redis.Redis.from_url(url.replace("redis+unix://", "unix://"))
    for stored in client.scan_iter(f"{KEY_PREFIX}:*/{key}*"):
        client.delete(stored)
    client.close()


def test_processes_sharing_a_key_never_exceed_its_limit_together(url: str, key: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    reports: multiprocessing.Queue[Report] = context.Queue()
    processes = [
        context.Process(target=hammer, args=(url, key, LIMIT, max_wait, SECONDS, start, reports))
        for max_wait in MAX_WAITS
    ]
    for process in processes:
        process.start()
    try:
        # when they all press one key at once
        start.set()
        results = [reports.get(timeout=120) for _ in processes]
    finally:
        stop(processes)
    grants = sorted(grant for report in results for grant in report.grants)
    # then they did contend, and took places in turn
    assert sum(report.refusals for report in results) > 0
    assert len(grants) > LIMIT.count
    assert len({report.pid for report in results if report.grants}) >= 2
    # and no second ever held more places than the limit
    assert most_in_any_window(grants, LIMIT.period_seconds) <= LIMIT.count


def stop(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)


def test_the_window_check_finds_a_burst() -> None:
    """The check above can fail: six places in one second are found, five are not."""
    burst = [(10 + i / 10, 10 + i / 10 + 0.01) for i in range(6)]
    assert most_in_any_window(burst, 1) == 6
    spread = [(10 + i * 0.21, 10 + i * 0.21 + 0.01) for i in range(6)]
    assert most_in_any_window(spread, 1) == 5


CAP = 3
LEASE_SECONDS = 2.0
#: Some processes give up soon (``WaitForTurn``) and ask again, some wait longer.
LEASE_MAX_WAITS = (0.05, 1.0, 0.05, 1.0, 0.2)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold one instant together. Where one ends as another
    begins they are not counted together: each lies inside its place's holding, so the
    places themselves did not overlap there, or barely."""
    # at one instant, ends (-1) sort before beginnings (+1)
    steps = sorted([(began, 1) for began, _ in intervals] + [(end, -1) for _, end in intervals])
    at_once = most = 0
    for _, step in steps:
        at_once += step
        most = max(most, at_once)
    return most


def test_processes_sharing_a_key_never_hold_more_places_at_once_than_its_cap(
    url: str, key: str
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    reports: multiprocessing.Queue[Held] = context.Queue()
    processes = [
        context.Process(
            target=hold_places, args=(url, key, CAP, max_wait, LEASE_SECONDS, start, reports)
        )
        for max_wait in LEASE_MAX_WAITS
    ]
    for process in processes:
        process.start()
    try:
        # when they all hold places of one key, as many as they can get
        start.set()
        results = [reports.get(timeout=120) for _ in processes]
    finally:
        stop(processes)
    held = [interval for report in results for interval in report.held]
    # then they did contend, and took places in turn
    assert sum(report.refusals for report in results) > 0
    assert len({report.pid for report in results if report.held}) >= 2
    # and never more than the cap held at once, though the cap was used
    assert most_at_once(held) == CAP
    # and every place was given back
    client = redis.Redis.from_url(url.replace("redis+unix://", "unix://"))
    try:
        assert client.exists(f"{KEY_PREFIX}:lease/{key}") == 0
    finally:
        client.close()


def test_the_overlap_check_finds_one_too_many() -> None:
    """The check above can fail: four intervals over one instant are found, and
    intervals that only touch are not counted together."""
    four = [(0.0, 1.0), (0.5, 1.5), (0.9, 2.0), (0.95, 0.96), (3.0, 4.0)]
    assert most_at_once(four) == 4
    chained = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (0.5, 2.5)]
    assert most_at_once(chained) == 2


TTL = 1.0


def test_a_place_held_by_a_killed_process_is_free_after_its_ttl_not_before(
    url: str, key: str
) -> None:
    # given two places of a key: one held here by a long call (so the set of places
    # lives on: the dead process's place must expire on its own, not with the key)
    limiter = RateLimiter.from_url(url)
    with limiter.lease(key, 2, ttl=30, max_wait=0):
        # and the other by a process for TTL seconds
        context = multiprocessing.get_context("spawn")
        holding: multiprocessing.Queue[tuple[float, float]] = context.Queue()
        holder = context.Process(target=die_holding, args=(url, key, 2, TTL, holding))
        holder.start()
        try:
            before_take, taken = holding.get(timeout=60)
            # when that process is killed with its place held: it never gives it back
            holder.kill()
            holder.join(10)
        finally:
            stop([holder])
        assert holder.exitcode == -signal.SIGKILL
        # then another caller, asking every 20 ms, is refused until the TTL has run out
        refused: list[float] = []
        while True:
            asked = time.time()
            assert asked < taken + TTL + 5, "the killed process's place was never given back"
            try:
                with limiter.lease(key, 2, ttl=TTL, max_wait=0):
                    got = time.time()
                    break
            except WaitForTurn:
                refused.append(asked)
                time.sleep(0.02)
    assert refused  # the dead process's place outlived it
    # not before its TTL (the place was taken after before_take; Redis counts whole ms)
    assert got >= before_take + TTL - 0.002
    # and soon after it
    assert asked <= taken + TTL + 0.5
