"""Publishing to the broker off the event loop.

Stored events are handed to one thread that sends the messages ``domain.routing`` builds
for them, by task name.
A request never waits for the broker and never fails because of it: if the broker is
down the message is dropped here, and the outbox sweeper publishes the stored event
later.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable

import structlog
from celery import Celery

from domain.routing import BATCH_SIZE, messages
from domain.settings import Settings, celery_config

log = structlog.get_logger(__name__)

_STOP = object()


def publishing_client(settings: Settings) -> Celery:
    app = Celery("meterbridge-receiver", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class Publisher:
    def __init__(self, settings: Settings, *, max_backlog: int = 100_000) -> None:
        self._app = publishing_client(settings)
        self._linger = settings.publish_linger_ms / 1000
        self._queue_name = settings.queue
        self._backlog: queue.Queue[object] = queue.Queue(maxsize=max_backlog)
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.failed_since: float | None = None
        self.dropped = 0

    @property
    def app(self) -> Celery:
        return self._app

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._backlog.put(_STOP, timeout=1)
        self._thread.join(timeout=10)

    def queue_depth(self) -> int | None:
        """Messages waiting in the queue (0 before anything declared it), or None when the
        broker does not answer."""
        try:
            with self._app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
                try:
                    declared = connection.default_channel.queue_declare(
                        queue=self._queue_name, passive=True
                    )
                except Exception:  # not declared yet: nothing was ever published to it
                    return 0
                return int(declared.message_count)
        except Exception:
            return None

    def publish(self, event_id: str, event_type: str = "") -> None:
        """Never blocks: a full backlog drops the id (the sweeper has the event)."""
        self.publish_many([(event_id, event_type)])

    def publish_many(self, events: Iterable[tuple[str, str]]) -> int:
        """``domain.routing.Publish``: hands the (id, type) pairs to the thread and returns
        how many it took. Never blocks: a full backlog drops the rest (the sweeper has
        them)."""
        taken = 0
        for event in events:
            try:
                self._backlog.put_nowait(event)
            except queue.Full:
                self.dropped += 1
            else:
                taken += 1
        return taken

    def _run(self) -> None:
        while True:
            batch = self._gather(self._backlog.get())
            stop = _STOP in batch
            self._send([item for item in batch if isinstance(item, tuple)])
            if stop:
                return

    def _gather(self, first: object) -> list[object]:
        """Wait up to the linger for more ids, so that moderate traffic still travels in
        batches: fewer messages, less overhead per event on both sides of the broker."""
        batch = [first]
        deadline = time.monotonic() + self._linger
        while len(batch) < BATCH_SIZE and first is not _STOP:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._backlog.get(timeout=remaining)
                    if remaining > 0
                    else self._backlog.get_nowait()
                )
            except queue.Empty:
                break
            batch.append(item)
            if item is _STOP:
                break
        return batch

    def _send(self, events: list[tuple[str, str]]) -> None:
        if not events:
            return
        try:
            with self._app.producer_or_acquire() as producer:
                for task, args in messages(events):
                    self._app.send_task(
                        task,
                        args=args,
                        queue=self._queue_name,
                        producer=producer,
                        retry=False,
                    )
        except Exception as exc:  # the broker is down or refused; the sweeper covers it
            self.dropped += len(events)
            if self.failed_since is None:
                self.failed_since = time.monotonic()
                log.warning("publish.failed", error=type(exc).__name__, events=len(events))
            return
        if self.failed_since is not None:
            log.info("publish.recovered", after_seconds=round(time.monotonic() - self.failed_since))
            self.failed_since = None
