"""Real processes for integration tests: receiver (uvicorn), Celery worker, beat, Flower.

Each runs in its own process group, logs to a file the test can read, and is stopped
(or SIGKILLed) as a group so no prefork child outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ephemeral_port_reserve
import httpx
import uvicorn

from tests.support.environment import REPO, Environment

CLI = [sys.executable, "-m", "workers.cli"]


def free_port() -> int:
    """A port on 127.0.0.1 for a server to bind. A port merely found free can be handed to
    another test process before the server binds it (whose server then answers in its
    place); a reserved one is left in TIME_WAIT, so the kernel hands it to no one else for
    a minute, while a server binding with SO_REUSEADDR (uvicorn, Flower, aiosmtpd,
    http.server) gets it at once."""
    return int(ephemeral_port_reserve.reserve("127.0.0.1"))


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def serve_in_thread(app: Any, port: int) -> uvicorn.Server:
    """Serve an ASGI app (the fakes of Chargebee, Stripe, Paddle) on 127.0.0.1:``port`` in
    a daemon thread; answers once it accepts connections. Stop it with ``stop_server``."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started, timeout=10)
    return server


def stop_server(server: uvicorn.Server | None) -> None:
    if server is not None:
        server.should_exit = True


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30) -> None:
        regex = re.compile(pattern)

        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-3000:]}"
                )
            return bool(regex.search(self.log()))

        wait_for(seen, timeout=timeout, what=f"{self.name} to log {pattern!r}")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        if signum == signal.SIGKILL:
            self.popen.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM to the main process alone, as a process manager sends it (a Celery
        worker then finishes its running tasks)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20) -> None:
        """Stop the way a process manager does: ``terminate``, then SIGKILL to whatever of
        the group is left after ``timeout`` seconds."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        self.kill(signal.SIGKILL)
        self._log.close()


class Stack:
    """The processes of one test environment."""

    def __init__(self, env: Environment, logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[Proc] = []
        self.receiver_url = ""
        #: Readiness checks put off by ``side_by_side``; None outside it.
        self._put_off: list[Callable[[], None]] | None = None

    @contextlib.contextmanager
    def side_by_side(self) -> Iterator[None]:
        """Start the processes begun inside at once, and wait for all of them to be ready
        on leaving: a stack's start costs its slowest process, not the sum of them."""
        self._put_off = []
        try:
            yield
            for check in self._put_off:
                check()
        finally:
            self._put_off = None

    def _when_ready(self, check: Callable[[], None]) -> None:
        if self._put_off is None:
            check()
        else:
            self._put_off.append(check)

    def _start(self, name: str, args: list[str], **env: str) -> Proc:
        count = sum(1 for proc in self.procs if proc.name.startswith(name))
        proc = Proc(
            name, [*CLI, *args], self.env.process_env(**env), self.logs / f"{name}-{count}.log"
        )
        self.procs.append(proc)
        return proc

    def start_receiver(self, *, wait: bool = True, **env: str) -> Proc:
        port = free_port()
        proc = self._start("receiver", ["receiver", "--port", str(port)], **env)
        self.receiver_url = f"http://127.0.0.1:{port}"
        url = self.receiver_url
        if wait:
            self._when_ready(lambda: _wait_healthy(proc, url))
        return proc

    def start_worker(self, *, concurrency: int = 2, wait: bool = True, **env: str) -> Proc:
        proc = self._start(
            "worker",
            ["worker", "--concurrency", str(concurrency), "--hostname", f"w{len(self.procs)}@%h"],
            **env,
        )
        if wait:
            self._when_ready(lambda: proc.wait_for_log(r"ready\.", timeout=60))
        return proc

    def start_beat(self, **env: str) -> Proc:
        proc = self._start("beat", ["beat"], **env)
        self._when_ready(lambda: proc.wait_for_log(r"beat: Starting", timeout=30))
        return proc

    def close(self) -> None:
        """Stop every process, side by side: each is sent SIGTERM before any is waited for."""
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            proc.stop()


def _wait_healthy(proc: Proc, url: str) -> None:
    """Until the receiver answers /healthz, having logged that it bound ``url`` itself: an
    answer alone could come from another test's server on the same port."""
    proc.wait_for_log(re.escape(f"Uvicorn running on {url} "), timeout=30)
    wait_for(lambda: _healthy(url, proc), timeout=30, what="receiver /healthz")


def _healthy(url: str, proc: Proc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"receiver exited ({proc.popen.returncode}):\n{proc.log()[-3000:]}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
