"""One rate limit, several worker processes, the test run's real Redis: however hard the
processes press one key, no second ever holds more calls than the limit.

Each process records, for every place it was given, the interval in which the limiter
took it: from just before its last look at the window (the call's start, or the end of
its last sleep) to the return. The place's own time lies in that interval, so a window
holding more than the limit's count of whole intervals proves the limit broken; counting
the returns alone would blame the limiter for the scheduler's delays.
"""

from __future__ import annotations

import multiprocessing
import uuid

import redis

from domain.ratelimits import Limit
from domain.settings import Settings
from tests.support.ratelimits import Report, hammer
from tests.support.servers import session_services
from workers.ratelimits import KEY_PREFIX

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


def test_processes_sharing_a_key_never_exceed_its_limit_together() -> None:
    # given the test run's Redis, as the settings' rate limit URL spells it
    services = session_services()
    url = Settings(_env_file=None, broker_url=services.redis_url, redis_url="").rate_limit_redis_url
    key = f"test:{uuid.uuid4().hex}"
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
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        client = redis.Redis.from_url(url.replace("redis+unix://", "unix://"))
        for stored in client.scan_iter(f"{KEY_PREFIX}:*/{key}/*"):
            client.delete(stored)
        client.close()
    grants = sorted(grant for report in results for grant in report.grants)
    # then they did contend, and took places in turn
    assert sum(report.refusals for report in results) > 0
    assert len(grants) > LIMIT.count
    assert len({report.pid for report in results if report.grants}) >= 2
    # and no second ever held more places than the limit
    assert most_in_any_window(grants, LIMIT.period_seconds) <= LIMIT.count


def test_the_window_check_finds_a_burst() -> None:
    """The check above can fail: six places in one second are found, five are not."""
    burst = [(10 + i / 10, 10 + i / 10 + 0.01) for i in range(6)]
    assert most_in_any_window(burst, 1) == 6
    spread = [(10 + i * 0.21, 10 + i * 0.21 + 0.01) for i in range(6)]
    assert most_in_any_window(spread, 1) == 5
