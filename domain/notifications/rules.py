"""Notification rules: an event type of the catalogue, a condition over its fields, and
who is told when it holds.

A rule either ``always_fire``s (every event of its type) or carries a ``calculation``, a
boolean expression over the event's fields (``domain.expressions``), checked against the
event type's schema when the rule is saved: a field the event does not have, or a
comparison its types cannot make, is refused with the position. It sends to webhook
destinations and/or emails users of the organisation; at least one of either.

A rule on a scheduled event type (``schedule.*``) carries its schedule: a cron expression
(``schedule_cron``, in UTC) or an interval (``schedule_every_seconds``); beat evaluates the
event when ``next_fire_at`` comes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache

import sqlalchemy as sa
from croniter import croniter
from sqlmodel import JSON, Column, Field, Session, SQLModel, Text, col, select

from domain.catalogue import CATALOGUE
from domain.clock import utcnow
from domain.errors import Conflict, InvalidInput
from domain.expressions import ExpressionError, Node, check
from domain.ids import new_id
from domain.scoping import add_unique, owned
from domain.users import check_users
from domain.webhooks.destinations import WebhookDestination

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SCHEDULED_PREFIX = "schedule."
#: Shortest interval a scheduled rule may run at.
MIN_INTERVAL_SECONDS = 60


class NotificationRule(SQLModel, table=True):
    __tablename__ = "notification_rule"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "code", name="uq_notification_rule_code"),
        sa.Index("ix_notification_rule_event", "org_id", "event_name"),
        # beat's question, every few seconds: which scheduled rules are due
        sa.Index(
            "ix_notification_rule_due",
            "next_fire_at",
            postgresql_where=sa.text("next_fire_at IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=lambda: new_id("nrl"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    code: str = Field(max_length=100)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=1000)
    event_name: str = Field(max_length=200)
    active: bool = True
    always_fire: bool = False
    calculation: str | None = Field(default=None, sa_type=Text)
    webhook_destination_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    user_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    schedule_cron: str | None = Field(default=None, max_length=100)
    schedule_every_seconds: int | None = None
    next_fire_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class NotificationFiring(SQLModel, table=True):
    """One rule's verdict on one event: recorded whether or not it fired, once."""

    __tablename__ = "notification_firing"
    __table_args__ = (
        sa.UniqueConstraint("rule_id", "event_id", name="uq_notification_firing"),
        sa.Index("ix_notification_firing_event", "event_id"),
    )

    id: str = Field(default_factory=lambda: new_id("nfr"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    rule_id: str = Field(foreign_key="notification_rule.id", max_length=40)
    event_id: str = Field(foreign_key="event.id", max_length=40)
    fired: bool
    #: Why: "always fires", "calculation is true", "calculation is false".
    reason: str = Field(max_length=300)
    created_at: datetime = Field(default_factory=utcnow)


def is_scheduled(event_name: str) -> bool:
    return event_name.startswith(SCHEDULED_PREFIX)


@lru_cache(maxsize=1024)
def compiled(event_name: str, calculation: str) -> Node:
    """The checked expression of a rule (cached: rules are read for every event)."""
    return check(calculation, CATALOGUE[event_name].schema)


def _check_event(event_name: str) -> None:
    if event_name not in CATALOGUE:
        raise InvalidInput(
            f"unknown event type {event_name!r}: GET /api/v1/event-types lists them",
            field="event_name",
        )


def _check_condition(event_name: str, always_fire: bool, calculation: str | None) -> None:
    if always_fire and calculation:
        raise InvalidInput(
            "a rule that always fires has no calculation: leave one out", field="calculation"
        )
    if not always_fire and not calculation:
        raise InvalidInput(
            "a calculation is required unless the rule always fires", field="calculation"
        )
    if calculation:
        try:
            compiled(event_name, calculation)
        except ExpressionError as exc:
            raise InvalidInput(str(exc), field="calculation", position=exc.position) from None


def _check_destinations(session: Session, org_id: str, ids: list[str]) -> None:
    found = set(
        session.exec(
            select(WebhookDestination.id).where(
                col(WebhookDestination.org_id) == org_id, col(WebhookDestination.id).in_(ids)
            )
        ).all()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput(
            f"unknown webhook destination ids: {', '.join(missing)}",
            field="webhook_destination_ids",
        )


def _check_schedule(
    event_name: str, cron: str | None, every_seconds: int | None, now: datetime
) -> datetime | None:
    """The first time the rule's event is due, or None for a rule on a system event."""
    if not is_scheduled(event_name):
        if cron or every_seconds:
            raise InvalidInput(
                "only a rule on a scheduled event (schedule.*) has a schedule",
                field="schedule_cron" if cron else "schedule_every_seconds",
            )
        return None
    if bool(cron) == bool(every_seconds):
        raise InvalidInput(
            "a rule on a scheduled event needs one of schedule_cron or schedule_every_seconds",
            field="schedule_cron",
        )
    return next_fire(cron, every_seconds, now)


def next_fire(cron: str | None, every_seconds: int | None, after: datetime) -> datetime:
    if every_seconds:
        if every_seconds < MIN_INTERVAL_SECONDS:
            raise InvalidInput(
                f"at least {MIN_INTERVAL_SECONDS} seconds", field="schedule_every_seconds"
            )
        return after + timedelta(seconds=every_seconds)
    assert cron is not None
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise InvalidInput(
            f"not a cron expression of five fields (minute hour day month weekday): {cron!r}",
            field="schedule_cron",
        )
    following: datetime = croniter(cron, after).get_next(datetime)
    return following


def create_rule(
    session: Session,
    org_id: str,
    *,
    code: str,
    name: str,
    event_name: str,
    description: str = "",
    active: bool = True,
    always_fire: bool = False,
    calculation: str | None = None,
    webhook_destination_ids: list[str] | None = None,
    user_ids: list[str] | None = None,
    schedule_cron: str | None = None,
    schedule_every_seconds: int | None = None,
) -> NotificationRule:
    if not CODE_PATTERN.match(code):
        raise InvalidInput(
            "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 100",
            field="code",
        )
    rule = NotificationRule(
        org_id=org_id,
        code=code,
        name=name,
        description=description,
        event_name=event_name,
        active=active,
        always_fire=always_fire,
        calculation=calculation or None,
        webhook_destination_ids=list(dict.fromkeys(webhook_destination_ids or [])),
        user_ids=list(dict.fromkeys(user_ids or [])),
        schedule_cron=schedule_cron,
        schedule_every_seconds=schedule_every_seconds,
    )
    rule.next_fire_at = _check(session, rule)
    add_unique(session, rule, Conflict(f"a notification rule with code {code!r} exists"))
    return rule


SCHEDULE_FIELDS = frozenset({"schedule_cron", "schedule_every_seconds"})
#: What ``update_rule`` may change.
UPDATABLE = frozenset(
    {
        "name",
        "description",
        "active",
        "always_fire",
        "calculation",
        "webhook_destination_ids",
        "user_ids",
        "schedule_cron",
        "schedule_every_seconds",
    }
)
#: What ``update_rule`` may set to null (to take it off the rule).
NULLABLE = frozenset({"calculation", *SCHEDULE_FIELDS})


def update_rule(
    session: Session, org_id: str, rule_id: str, changes: dict[str, object]
) -> NotificationRule:
    """Change the named fields and check the rule as a whole again."""
    rule = get_rule(session, org_id, rule_id)
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise InvalidInput("cannot be changed", field=sorted(unknown)[0])
    nulled = sorted(key for key, value in changes.items() if value is None and key not in NULLABLE)
    if nulled:
        raise InvalidInput("cannot be null", field=nulled[0])
    for key, value in changes.items():
        setattr(rule, key, value)
    rule.calculation = rule.calculation or None
    first_due = _check(session, rule)
    if SCHEDULE_FIELDS & changes.keys() or rule.next_fire_at is None:
        rule.next_fire_at = first_due  # else the schedule keeps its course
    rule.updated_at = utcnow()
    session.add(rule)
    return rule


def _check(session: Session, rule: NotificationRule) -> datetime | None:
    """Refuse a rule that cannot work; the first due time of a scheduled one."""
    _check_event(rule.event_name)
    _check_condition(rule.event_name, rule.always_fire, rule.calculation)
    if not rule.webhook_destination_ids and not rule.user_ids:
        raise InvalidInput(
            "send to at least one webhook destination or user", field="webhook_destination_ids"
        )
    _check_destinations(session, rule.org_id, rule.webhook_destination_ids)
    check_users(session, rule.org_id, rule.user_ids, field="user_ids")
    return _check_schedule(
        rule.event_name, rule.schedule_cron, rule.schedule_every_seconds, utcnow()
    )


def get_rule(session: Session, org_id: str, rule_id: str) -> NotificationRule:
    return owned(session, NotificationRule, org_id, rule_id, "notification rule")


def list_rules(
    session: Session, org_id: str, *, event_name: str | None = None
) -> list[NotificationRule]:
    statement = select(NotificationRule).where(col(NotificationRule.org_id) == org_id)
    if event_name:
        statement = statement.where(col(NotificationRule.event_name) == event_name)
    return list(session.exec(statement.order_by(col(NotificationRule.id))))


def delete_rule(session: Session, org_id: str, rule_id: str) -> None:
    """A rule that has fired keeps its record: it is deactivated, not deleted."""
    rule = get_rule(session, org_id, rule_id)
    fired = session.exec(
        select(NotificationFiring.id).where(col(NotificationFiring.rule_id) == rule.id).limit(1)
    ).first()
    if fired:
        raise Conflict("the rule has a firing history: set active to false instead")
    session.delete(rule)


def list_firings(
    session: Session, org_id: str, rule_id: str, *, limit: int = 100
) -> list[NotificationFiring]:
    """The rule's verdicts, newest first."""
    rule = get_rule(session, org_id, rule_id)
    statement = (
        select(NotificationFiring)
        .where(col(NotificationFiring.rule_id) == rule.id)
        .order_by(col(NotificationFiring.id).desc())
        .limit(limit)
    )
    return list(session.exec(statement))
