"""The end-to-end baseline: raw Celery no-op tasks on meterbridge's own Celery settings.

The app takes ``celery_config(settings)`` (broker, acks late, prefetch multiplier, task
events, ...) from the same ``METERBRIDGE_*`` environment as meterbridge, and its worker
is started with the argv ``meterbridge worker`` builds (prefork, concurrency, queue,
task events, hostname). The queue is ``METERBRIDGE_QUEUE``: give it one of its own.

    python -m bench.noop_app --concurrency 2 --hostname noop@%h

The benchmark counts finished tasks with Celery's own task events (``TaskWatcher``), so
the task does nothing at all.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from domain.settings import Settings, celery_config, load_settings

TASK = "bench.noop"


def noop() -> None:
    return None


def create_app(settings: Settings) -> Celery:
    app = Celery("bench-noop", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.task(name=TASK)(noop)
    return app


def publish(app: Celery, queue: str, count: int) -> None:
    """``count`` no-op tasks to the queue, over one producer (as the receiver publishes)."""
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(TASK, queue=queue, producer=producer, retry=False)


class TaskWatcher:
    """Counts ``task-succeeded`` events of one worker, in a thread of the benchmark."""

    def __init__(self, app: Celery, hostname: str, queue_prefix: str) -> None:
        self.app = app
        self.hostname = hostname
        self.succeeded = 0
        self.last_success = 0.0
        self.seen_worker = False
        self._queue_prefix = queue_prefix
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, name="task-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            self._receiver = self.app.events.Receiver(
                connection, handlers={"*": self._on_event}, queue_prefix=self._queue_prefix
            )
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("hostname") != self.hostname:
            return
        with self._lock:
            self.seen_worker = True
            if event.get("type") == "task-succeeded":
                self.succeeded += 1
                self.last_success = max(self.last_success, float(event["timestamp"]))

    def wait_for(self, count: int, timeout: float) -> float:
        """Until ``count`` tasks succeeded; returns the last one's time (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while self.succeeded < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.succeeded} of {count} no-op tasks done")
            time.sleep(0.05)
        return self.last_success

    def reset(self) -> None:
        with self._lock:
            self.succeeded, self.last_success = 0, 0.0


@contextmanager
def watching(app: Celery, hostname: str, queue_prefix: str) -> Iterator[TaskWatcher]:
    watcher = TaskWatcher(app, hostname, queue_prefix)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


def main() -> None:
    settings = load_settings()
    p = argparse.ArgumentParser(description="Run a Celery worker for the no-op baseline.")
    p.add_argument("--concurrency", type=int, default=settings.worker_concurrency)
    p.add_argument("--hostname", required=True)
    args = p.parse_args()
    # The argv workers.cli.run.worker builds for `meterbridge worker`.
    create_app(settings).worker_main(
        [
            "worker",
            f"--concurrency={args.concurrency}",
            "--pool=prefork",
            f"--queues={settings.queue}",
            "--task-events",
            f"--hostname={args.hostname}",
        ]
    )


if __name__ == "__main__":
    main()
