"""Group commit for intake: one thread inserts whatever requests are waiting in one
transaction, so a commit's fsync is shared by many requests instead of paid by each.

Requests await a future that resolves only after the commit, so a 2xx always means
durably stored. Repeats of a provider event id (in the batch or already stored) resolve
to the stored event's id, marked duplicate.

A row the database refuses (``DataError``, ``IntegrityError``, text it cannot encode) must
not fail the requests batched with it: the batch is written again with a savepoint per
row, so only that row's request fails (``RowRefused``, permanent) and the others commit
together. Any other failure is the store's (``StoreUnavailable``, transient): every
request of the batch fails and nothing is acknowledged.
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
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from domain.errors import PermanentError, TransientError
from domain.events import Event

log = structlog.get_logger(__name__)

TABLE = Event.__table__  # type: ignore[attr-defined]


class StoreUnavailable(TransientError):
    """The event could not be committed; nothing was acknowledged. Worth retrying."""


class RowRefused(PermanentError):
    """The database refuses this event's row as sent (its content, not the store): it
    fails the same way every time. The rows batched with it are unaffected."""


#: Failures that belong to one row's content rather than to the store. UnicodeError: the
#: driver cannot encode a lone surrogate (raised before anything is sent).
_ROW_ERRORS: tuple[type[Exception], ...] = (DataError, IntegrityError, UnicodeError)


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
            try:
                self._write(batch)
            except Exception:  # never let the writer die: every later request would hang
                log.exception("intake.writer_failed", batch=len(batch))
                for item in batch:
                    _resolve(item, error=StoreUnavailable("the writer failed"))
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
        except _ROW_ERRORS as exc:
            if len(batch) == 1:
                _refuse(batch[0], exc)
            else:
                self._write_row_by_row(batch)
            return
        except SQLAlchemyError as exc:
            self._unavailable(batch, exc)
            return
        for item, stored in zip(batch, results, strict=True):
            _resolve(item, result=stored)

    def _write_row_by_row(self, batch: list[_Pending]) -> None:
        """The batch again, one savepoint per row, still one commit: a refused row rolls
        back alone and its request alone fails."""
        outcomes: list[Stored | RowRefused] = []
        try:
            with self._engine.begin() as connection:
                for item in batch:
                    try:
                        with connection.begin_nested():
                            outcomes.append(self._insert_batch(connection, [item.row])[0])
                    except _ROW_ERRORS as exc:
                        outcomes.append(_refused(exc))
        except SQLAlchemyError as exc:
            self._unavailable(batch, exc)
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, RowRefused):
                log.warning("intake.row_refused", reason=str(outcome), batch=len(batch))
                _resolve(item, error=outcome)
            else:
                _resolve(item, result=outcome)

    def _unavailable(self, batch: list[_Pending], exc: Exception) -> None:
        log.warning("intake.store_failed", error=type(exc).__name__, batch=len(batch))
        for item in batch:
            _resolve(item, error=StoreUnavailable(type(exc).__name__))

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


def _refused(exc: Exception) -> RowRefused:
    """The database's own reason, without the statement and parameters SQLAlchemy adds."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return RowRefused(reason or type(exc).__name__)


def _refuse(item: _Pending, exc: Exception) -> None:
    refused = _refused(exc)
    log.warning("intake.row_refused", reason=str(refused), batch=1)
    _resolve(item, error=refused)


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
