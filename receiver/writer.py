"""Group commit for intake: one thread inserts whatever requests are waiting in one
transaction, so a commit's fsync is shared by many requests instead of paid by each.

Requests await a future that resolves only after the commit, so a 2xx always means
durably stored. Repeats of a provider event id (in the batch or already stored) resolve
to the stored event's id, marked duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from domain.events import Event

log = structlog.get_logger(__name__)

TABLE = Event.__table__  # type: ignore[attr-defined]


class StoreUnavailable(Exception):
    """The event could not be committed; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: str
    duplicate: bool


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    future: asyncio.Future[Stored]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class IntakeWriter:
    def __init__(
        self, engine: Engine, *, max_batch: int = 500, max_batch_bytes: int = 8 * 1024 * 1024
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._statement = (
            insert(TABLE)
            .on_conflict_do_nothing(index_elements=["source_id", "external_id"])
            .returning(TABLE.c.id)
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    async def store(self, row: dict[str, Any]) -> Stored:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._queue.put(_Pending(row, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._write(batch)
            if stop:
                return

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, size = [first], len(first.row["payload"])
        while len(batch) < self._max_batch and size < self._max_batch_bytes:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
            size += len(item.row["payload"])
        return batch, False

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as connection:
                results = self._insert_batch(connection, [item.row for item in batch])
        except SQLAlchemyError as exc:
            log.warning("intake.store_failed", error=type(exc).__name__, batch=len(batch))
            for item in batch:
                _resolve(item, error=StoreUnavailable(str(exc.__class__.__name__)))
            return
        for item, stored in zip(batch, results, strict=True):
            _resolve(item, result=stored)

    def _insert_batch(self, connection: Connection, rows: list[dict[str, Any]]) -> list[Stored]:
        first_of: dict[tuple[str, str], str] = {}
        unique_rows = []
        for row in rows:
            key = (row["source_id"], row["external_id"])
            if row["external_id"] is None or key not in first_of:
                if row["external_id"] is not None:
                    first_of[key] = row["id"]
                unique_rows.append(row)
        # executemany: one compiled statement whatever the batch size; rows that collide
        # with a stored (source, provider event id) are skipped and not returned.
        inserted = set(connection.execute(self._statement, unique_rows).scalars())
        existing = self._existing_ids(
            connection, [row for row in unique_rows if row["id"] not in inserted]
        )
        results = []
        for row in rows:
            if row["id"] in inserted:
                results.append(Stored(row["id"], duplicate=False))
            else:
                key = (row["source_id"], row["external_id"])
                event_id = first_of[key] if first_of[key] in inserted else existing[key]
                results.append(Stored(event_id, duplicate=True))
        return results

    def _existing_ids(
        self, connection: Connection, rows: list[dict[str, Any]]
    ) -> dict[tuple[str, str], str]:
        by_source: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_source[row["source_id"]].append(row["external_id"])
        found: dict[tuple[str, str], str] = {}
        for source_id, external_ids in by_source.items():
            statement = select(TABLE.c.id, TABLE.c.external_id).where(
                TABLE.c.source_id == source_id, TABLE.c.external_id.in_(external_ids)
            )
            for event_id, external_id in connection.execute(statement):
                found[(source_id, external_id)] = event_id
        return found


def _resolve(
    item: _Pending, *, result: Stored | None = None, error: Exception | None = None
) -> None:
    def settle() -> None:
        if item.future.done():  # the client went away; the event is stored regardless
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
        item.loop.call_soon_threadsafe(settle)
