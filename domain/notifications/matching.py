"""Firing notification rules: every event of the catalogue, once processed by a worker, is
matched against its organisation's active rules (never on the intake path).

Each rule's verdict is recorded (``NotificationFiring``: rule, event, fired or not, why),
and a rule that fires creates one webhook message per destination and one email per user,
all in the transaction that records the event's processing. The handler's ledger row and
the firing's uniqueness make it idempotent: an event processed again (a redelivered task,
a replay) fires nothing twice.

A scheduled event (``schedule.*``) is evaluated for one rule, whose schedule made it: its
``external_id`` is ``rule:<rule id>:<due time>``, and only that rule is matched.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from domain.catalogue import CATALOGUE
from domain.eventlog import INTERNAL_PROVIDER
from domain.expressions import evaluate
from domain.handlers import InboundEvent, registry
from domain.notifications.emails import queue_email
from domain.notifications.rendering import render_event_email
from domain.notifications.rules import NotificationFiring, NotificationRule, compiled
from domain.users import User
from domain.webhooks.destinations import WebhookDestination
from domain.webhooks.messages import add_message, message_body

HANDLER = "notifications.match"
SCHEDULED_KEY = "rule:"


@dataclass(frozen=True, slots=True)
class Verdict:
    fired: bool
    reason: str


def verdict(rule: NotificationRule, payload: object) -> Verdict:
    if rule.always_fire:
        return Verdict(True, "always fires")
    assert rule.calculation is not None
    held = isinstance(payload, dict) and evaluate(
        compiled(rule.event_name, rule.calculation), payload
    )
    return Verdict(held, f"calculation is {'true' if held else 'false'}")


def scheduled_key(rule_id: str, due: str) -> str:
    """The ``external_id`` of a scheduled event made for one rule."""
    return f"{SCHEDULED_KEY}{rule_id}:{due}"


def rules_for(session: Session, event: InboundEvent) -> list[NotificationRule]:
    statement = select(NotificationRule).where(
        col(NotificationRule.org_id) == event.org_id,
        col(NotificationRule.event_name) == event.type,
        col(NotificationRule.active).is_(True),
    )
    if event.external_id and event.external_id.startswith(SCHEDULED_KEY):
        rule_id = event.external_id[len(SCHEDULED_KEY) :].split(":", 1)[0]
        statement = statement.where(col(NotificationRule.id) == rule_id)
    return list(session.exec(statement.order_by(col(NotificationRule.id))))


def match_event(session: Session, event: InboundEvent) -> None:
    for rule in rules_for(session, event):
        done = session.exec(
            select(NotificationFiring.id).where(
                col(NotificationFiring.rule_id) == rule.id,
                col(NotificationFiring.event_id) == event.id,
            )
        ).first()
        if done:
            continue
        judged = verdict(rule, event.payload)
        firing = NotificationFiring(
            org_id=event.org_id,
            rule_id=rule.id,
            event_id=event.id,
            fired=judged.fired,
            reason=judged.reason,
        )
        session.add(firing)
        session.flush()
        if judged.fired:
            _send_webhooks(session, rule, firing, event)
            _send_emails(session, rule, firing, event)


def _send_webhooks(
    session: Session, rule: NotificationRule, firing: NotificationFiring, event: InboundEvent
) -> None:
    if not rule.webhook_destination_ids:
        return
    destinations = session.exec(
        select(WebhookDestination)
        .where(
            col(WebhookDestination.org_id) == event.org_id,
            col(WebhookDestination.id).in_(rule.webhook_destination_ids),
        )
        .order_by(col(WebhookDestination.id))
    ).all()
    occurred = event.occurred_at or event.received_at
    body = message_body(event.type, event.id, occurred, event.payload)
    for destination in destinations:
        add_message(
            session,
            destination,
            event_type=event.type,
            body=body,
            event_id=event.id,
            firing_id=firing.id,
            caused_by=event.id,
        )


def _send_emails(
    session: Session, rule: NotificationRule, firing: NotificationFiring, event: InboundEvent
) -> None:
    if not rule.user_ids:
        return
    users = session.exec(
        select(User)
        .where(col(User.org_id) == event.org_id, col(User.id).in_(rule.user_ids))
        .order_by(col(User.id))
    ).all()
    for user in users:
        rendered = render_event_email(
            event.type,
            event.payload,
            rule_name=rule.name,
            user_name=user.name,
            event_id=event.id,
            occurred_at=event.occurred_at or event.received_at,
        )
        queue_email(session, event, user, rendered, firing_id=firing.id)


for _name in CATALOGUE:
    registry.register(INTERNAL_PROVIDER, _name, name=HANDLER)(match_event)
