"""A small HTTP/1.1 load generator on asyncio streams (uvloop), with keep-alive.

Closed loop: ``connections`` connections, each sending its next request as soon as the
last one is answered. Paced (``rate``): requests are due at a fixed rate (open loop) and
latency counts from when a request was due, so a slow server is not hidden by waiting.
It measures its own CPU time, so a report can show it was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import uvloop

CONTENT_LENGTH = b"\r\ncontent-length:"
CHUNKED = b"\r\ntransfer-encoding: chunked"


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def count(self, *codes: int) -> int:
        return sum(self.statuses[code] for code in codes)

    def percentile_ms(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        cuts = statistics.quantiles(self.latencies, n=1000, method="inclusive")
        return cuts[min(len(cuts) - 1, max(0, round(q * 10) - 1))] * 1000

    @property
    def cpu_share(self) -> float:
        """CPU seconds the generator used per second of the run (1.0 = one core)."""
        return self.cpu_seconds / self.elapsed if self.elapsed else 0.0


class _Feed:
    """Hands out requests in order; paced, each with the time it is due."""

    def __init__(self, requests: Iterable[bytes], rate: float | None, duration: float | None):
        self._requests: Iterator[bytes] = iter(requests)
        self._rate = rate
        self._start = time.perf_counter()
        self._deadline = self._start + duration if duration else None
        self._issued = 0

    async def next(self) -> tuple[bytes, float] | None:
        now = time.perf_counter()
        due = now
        if self._rate:
            due = self._start + self._issued / self._rate
        if self._deadline is not None and max(now, due) >= self._deadline:
            return None
        request = next(self._requests, None)
        if request is None:
            return None
        self._issued += 1
        if due > now:
            await asyncio.sleep(due - now)
        return request, due


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    start = lower.find(CONTENT_LENGTH)
    if start >= 0:
        end = lower.index(b"\r\n", start + 2)
        length = int(lower[start + len(CONTENT_LENGTH) : end])
        if length:
            await reader.readexactly(length)
    elif CHUNKED in lower:
        await _skip_chunks(reader)
    return int(head[9:12])


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")  # the empty line after the last chunk (no trailers)


async def _connection(host: str, port: int, feed: _Feed, result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (item := await feed.next()) is not None:
            request, due = item
            try:
                writer.write(request)
                status = await _read_status(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            result.statuses[status] += 1
            result.latencies.append(time.perf_counter() - due)
    finally:
        writer.close()


async def _run(
    host: str,
    port: int,
    requests: Iterable[bytes],
    connections: int,
    rate: float | None,
    duration: float | None,
) -> LoadResult:
    result = LoadResult()
    feed = _Feed(requests, rate, duration)
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_connection(host, port, feed, result) for _ in range(connections)))
    result.elapsed = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return result


def run_load(
    host: str,
    port: int,
    requests: Iterable[bytes],
    *,
    connections: int = 32,
    rate: float | None = None,
    duration: float | None = None,
) -> LoadResult:
    """Send ``requests`` (raw HTTP/1.1 bytes) until they run out or ``duration`` passes."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(host, port, requests, connections, rate, duration))
