"""Servers for tests, from the same wheels as the product's embedded default.

``session_services()``: the PostgreSQL and Redis that serve the whole test run. The
machine's own are used when ``METERBRIDGE_TEST_DATABASE_URL`` / ``METERBRIDGE_TEST_REDIS_URL``
name them; otherwise one embedded PostgreSQL and one embedded Redis are started on first
use and stopped when the run ends. Each test environment makes its own database and queue
on them.

``ThrowawayPostgres`` / ``ThrowawayRedis``: servers a test stops, crashes and restarts
itself, so the shared ones are never touched.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workers.embedded import EmbeddedPostgres, EmbeddedRedis
from workers.embedded.postgres import THROWAWAY_OPTIONS


def _short_root(prefix: str) -> Path:
    # Under /tmp, not pytest's tmp dirs: socket paths must stay short, and as root the
    # server's own user must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.root = _short_root("mbtest-pg-")
        self.server = EmbeddedPostgres(
            self.root / "data", self.root / "sock", options=THROWAWAY_OPTIONS
        )

    @property
    def url(self) -> str:
        return self.server.url("postgres")

    def start(self) -> None:
        self.server.start()

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: a crash, as a database that goes away under its clients."""
        self.server.stop(mode)

    def remove(self) -> None:
        self.server.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayRedis:
    """Without persistence: a restart loses every queued message, as a crashed broker
    would."""

    def __init__(self) -> None:
        self.root = _short_root("mbtest-redis-")
        self.server = EmbeddedRedis(self.root, self.root / "redis.sock", durable=False)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.kill()

    def remove(self) -> None:
        self.server.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class SessionServices:
    database_url: str  # a server where environments create their own databases
    redis_url: str


_services: SessionServices | None = None
_owned: list[ThrowawayPostgres | ThrowawayRedis] = []


def session_services() -> SessionServices:
    global _services
    if _services is None:
        _services = SessionServices(
            os.environ.get("METERBRIDGE_TEST_DATABASE_URL") or _embedded(ThrowawayPostgres()),
            os.environ.get("METERBRIDGE_TEST_REDIS_URL") or _embedded(ThrowawayRedis()),
        )
    return _services


def _embedded(server: ThrowawayPostgres | ThrowawayRedis) -> str:
    if not _owned:
        atexit.register(stop_session_services)
    server.start()
    _owned.append(server)
    return server.url


def stop_session_services() -> None:
    while _owned:
        _owned.pop().remove()
