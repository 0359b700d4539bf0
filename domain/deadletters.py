"""Dead letters: events whose attempts are used up or that failed permanently.

A replay moves a dead event back to ``pending`` with a fresh attempt budget; its earlier
attempts stay in the history, tagged with the replay they belonged to. Replaying is a
conditional update from ``dead``, so replaying the same event twice starts it once.

``replay_dead_letters`` is the service the admin API and the CLI both call: count, then
(unless a dry run) replay chunk by chunk and publish each chunk once it has committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from domain.db import transaction
from domain.events import Event, EventStatus
from domain.routing import Publish

#: Most dead letters a dry run lists (it counts them all).
PREVIEW_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    org_id: str
    event_ids: tuple[str, ...] = ()
    source_id: str | None = None
    type: str | None = None
    error_contains: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        where = [col(Event.org_id) == self.org_id, col(Event.status) == EventStatus.DEAD]
        if self.event_ids:
            where.append(col(Event.id).in_(self.event_ids))
        if self.source_id:
            where.append(col(Event.source_id) == self.source_id)
        if self.type:
            where.append(col(Event.type) == self.type)
        if self.error_contains:
            pattern = "%" + _escape_like(self.error_contains) + "%"
            where.append(col(Event.last_error).ilike(pattern, escape="\\"))
        if self.since:
            where.append(col(Event.dead_at) >= self.since)
        if self.until:
            where.append(col(Event.dead_at) < self.until)
        return where


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_dead(session: Session, filt: DeadLetterFilter, *, limit: int = 100) -> list[Event]:
    statement = select(Event).where(*filt.conditions()).order_by(col(Event.id)).limit(limit)
    return list(session.exec(statement))


def count_dead(session: Session, filt: DeadLetterFilter) -> int:
    statement = select(sa.func.count()).select_from(Event).where(*filt.conditions())
    return int(session.exec(statement).one())


def replay(
    session: Session, org_id: str, event_ids: list[str], now: datetime, grace_seconds: float
) -> list[str]:
    """Move these dead events back to pending. Returns the ids actually moved, in order:
    an id that is not dead (already replayed, or never dead) is left alone."""
    if not event_ids:
        return []
    movable = list(
        session.exec(
            select(Event.id)
            .where(
                col(Event.id).in_(event_ids),
                col(Event.org_id) == org_id,
                col(Event.status) == EventStatus.DEAD,
            )
            .order_by(col(Event.id))
            .with_for_update()
        )
    )
    if movable:
        session.exec(
            update(Event)
            .where(col(Event.id).in_(movable), col(Event.status) == EventStatus.DEAD)
            .values(
                status=EventStatus.PENDING,
                attempts=0,
                replays=col(Event.replays) + 1,
                next_attempt_at=None,
                dead_at=None,
                dead_reason=None,
                finished_at=None,
                sweeps=0,
                sweep_after=now + timedelta(seconds=grace_seconds),
            )
        )
    return movable


def replay_matching(
    engine: Engine, filt: DeadLetterFilter, *, now: datetime, grace_seconds: float, chunk: int = 500
) -> Iterator[list[tuple[str, str]]]:
    """Replay every match, one transaction per chunk, yielding the (id, type) of the events
    each chunk moved (for publishing and progress). Memory stays flat however many match."""
    after = ""
    while True:
        with transaction(engine) as session:
            rows = session.exec(
                select(Event.id, Event.type)
                .where(*filt.conditions(), col(Event.id) > after)
                .order_by(col(Event.id))
                .limit(chunk)
            ).all()
            if not rows:
                return
            types = dict(rows)
            moved = replay(session, filt.org_id, list(types), now, grace_seconds)
        after = rows[-1][0]
        yield [(event_id, types[event_id]) for event_id in moved]


class ReplayProgress(Protocol):
    """What a caller sees of a replay while it runs (the CLI draws a bar from it)."""

    def start(self, matched: int) -> None:
        """Counted: about ``matched`` events are to be replayed."""

    def advance(self, replayed: int) -> None:
        """``replayed`` more events are back to pending and published."""


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    matched: int  # dead letters the filter matched when the replay began
    dry_run: bool
    would_replay: list[Event]  # a dry run's: up to PREVIEW_LIMIT of them, in id order
    replayed: list[str]  # ids moved back to pending and published, in id order


def replay_dead_letters(
    engine: Engine,
    filt: DeadLetterFilter,
    publish: Publish,
    *,
    now: datetime,
    grace_seconds: float,
    dry_run: bool = False,
    progress: ReplayProgress | None = None,
) -> ReplayOutcome:
    """Count the dead letters ``filt`` matches; unless ``dry_run``, move every match back
    to pending (one transaction per chunk) and ``publish`` each chunk after its commit (a
    lost publish is found by the sweeper). A dry run changes nothing and lists what would
    be replayed."""
    with transaction(engine) as session:
        matched = count_dead(session, filt)
        if dry_run:
            would = list_dead(session, filt, limit=PREVIEW_LIMIT)
            return ReplayOutcome(matched, dry_run=True, would_replay=would, replayed=[])
    if progress is not None:
        progress.start(matched)
    replayed: list[str] = []
    for moved in replay_matching(engine, filt, now=now, grace_seconds=grace_seconds):
        if moved:
            publish(moved)
            replayed.extend(event_id for event_id, _ in moved)
        if progress is not None:
            progress.advance(len(moved))
    return ReplayOutcome(matched, dry_run=False, would_replay=[], replayed=replayed)
