"""Scheduled events (``schedule.*``): figures of an organisation that beat reads on a
notification rule's schedule and logs as an event for that rule alone.

``emit_due`` takes each active rule on a scheduled event type whose ``next_fire_at`` has
come, reads the figures of its type for its window, appends the event with
``external_id = rule:<rule id>:<due time>`` (``matching.scheduled_key``: matching then
judges that rule only), and moves ``next_fire_at`` on. Each due time is emitted once: the
rules are read ``FOR UPDATE SKIP LOCKED`` (two beats, or two runs of the task, take
different rules) and moved on with an update fenced on the due time they were read with.

The window of an event ends at its due time (exclusive) and starts at the due time of the
rule's previous scheduled event (inclusive), so the windows of one rule follow each other
without gap or overlap, across missed ticks and changes of schedule too; a rule's first
event looks one interval back, or to the cron time before its due time. Figures of the
present state (open dead letters, bills awaiting approval, error streaks) are read when
the event is made (``evaluated_at``) and ages are measured to then.

A due time missed by more than one tick (beat was down) makes one event, for the due time
stored, and the schedule goes on from now: no burst of events for the ticks missed.

No Celery here: ``tasks.scheduled`` runs ``emit_due`` in a transaction every
``METERBRIDGE_SCHEDULE_CHECK_SECONDS`` and publishes what it appended after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from croniter import croniter
from sqlmodel import Session, col, select, update

from domain.bills import Bill, BillStatus
from domain.catalogue import (
    ConfigHealth,
    Payload,
    ScheduledBillsAwaitingApprovalFields,
    ScheduledDeadLettersFields,
    ScheduledIntegrationHealthFields,
)
from domain.errors import InvalidInput
from domain.eventlog import append_internal
from domain.events import Event, EventStatus
from domain.integrations.configs import list_configs
from domain.integrations.runs import IntegrationRun, RunStatus
from domain.notifications.matching import SCHEDULED_KEY, scheduled_key
from domain.notifications.rules import SCHEDULED_PREFIX, NotificationRule, next_fire

log = structlog.get_logger(__name__)

DEAD_LETTERS = "schedule.dead_letters"
BILLS_AWAITING_APPROVAL = "schedule.bills_awaiting_approval"
INTEGRATION_HEALTH = "schedule.integration_health"

#: How a run that finished ended: every one counts as a run, these as an error too.
FINISHED = (RunStatus.COMPLETE, RunStatus.ERROR, RunStatus.AUTH_FAILED)
FAILED = (RunStatus.ERROR, RunStatus.AUTH_FAILED)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)``: ``end`` is the due time, ``now`` when the figures are read."""

    start: datetime
    end: datetime
    now: datetime


def _age(since: datetime | None, now: datetime) -> int | None:
    if since is None:
        return None
    return max(0, int((now - since).total_seconds()))


def dead_letters(session: Session, org_id: str, window: Window) -> ScheduledDeadLettersFields:
    """The organisation's open dead letters (events now ``dead``)."""
    dead = (col(Event.org_id) == org_id, col(Event.status) == EventStatus.DEAD)
    died = sa.func.coalesce(col(Event.dead_at), col(Event.received_at))
    count = session.exec(select(sa.func.count()).select_from(Event).where(*dead)).one()
    oldest = session.exec(
        select(Event.id, died).where(*dead).order_by(died, col(Event.id)).limit(1)
    ).first()
    in_window = session.exec(
        select(sa.func.count())
        .select_from(Event)
        .where(*dead, col(Event.dead_at) >= window.start, col(Event.dead_at) < window.end)
    ).one()
    return ScheduledDeadLettersFields(
        count=count,
        oldest_age_seconds=_age(oldest[1], window.now) if oldest else None,
        oldest_event_id=oldest[0] if oldest else None,
        died_in_window=in_window,
        window_start=window.start,
        window_end=window.end,
        evaluated_at=window.now,
    )


def bills_awaiting_approval(
    session: Session, org_id: str, window: Window
) -> ScheduledBillsAwaitingApprovalFields:
    """The organisation's bills generated and not approved; age from the first generation."""
    waiting = (col(Bill.org_id) == org_id, col(Bill.status) == BillStatus.GENERATED)
    count = session.exec(select(sa.func.count()).select_from(Bill).where(*waiting)).one()
    oldest = session.exec(
        select(Bill.id, Bill.created_at)
        .where(*waiting)
        .order_by(col(Bill.created_at), col(Bill.id))
        .limit(1)
    ).first()
    generated = session.exec(
        select(sa.func.count())
        .select_from(Bill)
        .where(*waiting, col(Bill.created_at) >= window.start, col(Bill.created_at) < window.end)
    ).one()
    approved = session.exec(
        select(sa.func.count())
        .select_from(Bill)
        .where(
            col(Bill.org_id) == org_id,
            col(Bill.status) == BillStatus.APPROVED,
            col(Bill.approved_at) >= window.start,
            col(Bill.approved_at) < window.end,
        )
    ).one()
    return ScheduledBillsAwaitingApprovalFields(
        count=count,
        oldest_age_seconds=_age(oldest[1], window.now) if oldest else None,
        oldest_bill_id=oldest[0] if oldest else None,
        generated_in_window=generated,
        approved_in_window=approved,
        window_start=window.start,
        window_end=window.end,
        evaluated_at=window.now,
    )


def integration_health(
    session: Session, org_id: str, window: Window
) -> ScheduledIntegrationHealthFields:
    """Per integration config of the organisation: runs that finished in the window, those
    that ended in error, and its failed runs in a row now."""
    failed = sa.func.count().filter(col(IntegrationRun.status).in_(FAILED))
    counts = {
        config_id: (runs, errors)
        for config_id, runs, errors in session.exec(
            select(IntegrationRun.config_id, sa.func.count(), failed)
            .where(
                col(IntegrationRun.org_id) == org_id,
                col(IntegrationRun.status).in_(FINISHED),
                col(IntegrationRun.finished_at) >= window.start,
                col(IntegrationRun.finished_at) < window.end,
            )
            .group_by(col(IntegrationRun.config_id))
        ).all()
    }
    configs = [
        ConfigHealth(
            config_id=config.id,
            name=config.name,
            destination=config.destination,
            enabled=config.enabled,
            runs=counts.get(config.id, (0, 0))[0],
            errors=counts.get(config.id, (0, 0))[1],
            consecutive_errors=config.consecutive_errors,
        )
        for config in list_configs(session, org_id)
    ]
    return ScheduledIntegrationHealthFields(
        window_start=window.start,
        window_end=window.end,
        evaluated_at=window.now,
        configs=configs,
        runs=sum(config.runs for config in configs),
        errors=sum(config.errors for config in configs),
        configs_failing=sum(1 for config in configs if config.errors),
        max_consecutive_errors=max((config.consecutive_errors for config in configs), default=0),
        disabled_configs=sum(1 for config in configs if not config.enabled),
    )


#: The figures of each scheduled event type of the catalogue.
FIGURES: Mapping[str, Callable[[Session, str, Window], Payload]] = {
    DEAD_LETTERS: dead_letters,
    BILLS_AWAITING_APPROVAL: bills_awaiting_approval,
    INTEGRATION_HEALTH: integration_health,
}


def _utc(at: datetime) -> datetime:
    """An aware time in UTC (a naive one is taken to be UTC): cron times are UTC, and the
    due time in an event's key is spelled one way only."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def tick_before(cron: str | None, every_seconds: int | None, due: datetime) -> datetime:
    """The schedule's time before ``due``: one interval back, or the cron time before."""
    if every_seconds:
        return due - timedelta(seconds=every_seconds)
    assert cron is not None
    before: datetime = croniter(cron, due).get_prev(datetime)
    return _utc(before)


def window_start(session: Session, rule: NotificationRule, due: datetime) -> datetime:
    """The due time of the rule's previous scheduled event, or one tick before ``due``."""
    prefix = f"{SCHEDULED_KEY}{rule.id}:"
    previous = session.exec(
        select(Event.external_id)
        .where(
            col(Event.org_id) == rule.org_id,
            col(Event.type) == rule.event_name,
            col(Event.external_id).startswith(prefix, autoescape=True),
        )
        .order_by(col(Event.id).desc())
        .limit(1)
    ).first()
    if previous:
        try:
            start = _utc(datetime.fromisoformat(previous.removeprefix(prefix)))
        except ValueError:
            start = None
        if start is not None and start < due:
            return start
    return tick_before(rule.schedule_cron, rule.schedule_every_seconds, due)


def following(rule: NotificationRule, due: datetime, now: datetime) -> datetime:
    """The rule's next due time after ``due``; from ``now`` when that one has passed too
    (missed ticks are skipped, not caught up)."""
    after = _utc(next_fire(rule.schedule_cron, rule.schedule_every_seconds, due))
    if after <= now:
        after = _utc(next_fire(rule.schedule_cron, rule.schedule_every_seconds, now))
    return after


def due_rules(session: Session, now: datetime, limit: int) -> list[NotificationRule]:
    """Active scheduled rules whose time has come, oldest due first, locked for this
    transaction; rules another transaction holds are skipped."""
    statement = (
        select(NotificationRule)
        .where(
            col(NotificationRule.active).is_(True),
            col(NotificationRule.event_name).startswith(SCHEDULED_PREFIX),
            col(NotificationRule.next_fire_at) <= now,
        )
        .order_by(col(NotificationRule.next_fire_at), col(NotificationRule.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(statement))


def _advance(session: Session, rule_id: str, due: datetime, to: datetime | None) -> bool:
    """Move the rule's next due time from ``due`` to ``to``; False if it is no longer
    ``due`` (another transaction took this due time)."""
    moved = session.exec(
        update(NotificationRule)
        .where(col(NotificationRule.id) == rule_id, col(NotificationRule.next_fire_at) == due)
        .values(next_fire_at=to)
    )
    return bool(moved.rowcount == 1)


def emit_due(session: Session, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """Append the scheduled event of each rule that is due (at most ``limit`` rules) and
    move the rules on. Returns the (event id, event type) of the events appended, to be
    published once the caller's transaction has committed.

    A rule whose schedule cannot be read (stored around the API) or whose event type has
    no figures is logged and stopped (``next_fire_at`` emptied; saving it again restarts
    it), so that it does not hold up the others."""
    now = _utc(now)
    emitted: list[tuple[str, str]] = []
    for rule in due_rules(session, now, limit):
        assert rule.next_fire_at is not None
        due = _utc(rule.next_fire_at)
        figures = FIGURES.get(rule.event_name)
        try:
            if figures is None:
                raise InvalidInput(f"no figures for the event type {rule.event_name!r}")
            to = following(rule, due, now)
        except InvalidInput as exc:
            log.warning("scheduled.rule_stopped", rule_id=rule.id, reason=str(exc))
            _advance(session, rule.id, rule.next_fire_at, None)
            continue
        if not _advance(session, rule.id, rule.next_fire_at, to):
            continue
        window = Window(start=window_start(session, rule, due), end=due, now=now)
        payload = figures(session, rule.org_id, window)
        event = append_internal(
            session,
            org_id=rule.org_id,
            type=rule.event_name,
            payload=payload.model_dump(mode="json"),
            external_id=scheduled_key(rule.id, due.isoformat()),
        )
        emitted.append((event.id, event.type))
    return emitted
