"""What a person does to a webhook destination, each one service that owns its transaction
and publishes what it queued after the commit: the admin API calls these, as any other
caller would. (A lost publish is found by the sweeper.)"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from domain.catalogue import CATALOGUE, sample
from domain.clock import utcnow
from domain.db import transaction
from domain.errors import InvalidInput
from domain.notifications.rules import NotificationRule
from domain.routing import Publish
from domain.webhooks.destinations import WebhookDestination, get_destination
from domain.webhooks.messages import (
    WEBHOOK_DELIVER,
    MessageFilter,
    Replayed,
    WebhookAttempt,
    WebhookMessage,
    add_message,
    message_body,
    release_held,
    replay_failed,
)


@dataclass(frozen=True, slots=True)
class DestinationEnabled:
    destination: WebhookDestination
    released: list[str]  # ids of the work items published, oldest message first


def enable_and_release(
    engine: Engine, org_id: str, destination_id: str, publish: Publish
) -> DestinationEnabled:
    """Enable the destination, start its count of failures again, and send the messages
    held while it was disabled."""
    with transaction(engine) as session:
        destination = get_destination(session, org_id, destination_id)
        destination.enabled, destination.consecutive_errors = True, 0
        destination.disabled_at = destination.disabled_reason = None
        destination.updated_at = utcnow()
        session.add(destination)
        released = release_held(session, destination.id)
    _publish(publish, released)
    return DestinationEnabled(destination, released)


def replay(engine: Engine, filt: MessageFilter, *, dry_run: bool, publish: Publish) -> Replayed:
    """Send the failed messages the filter selects again (or, dry, only say which)."""
    with transaction(engine) as session:
        get_destination(session, filt.org_id, filt.destination_id)
        replayed = replay_failed(session, filt, dry_run=dry_run)
    _publish(publish, replayed.deliveries)
    return replayed


def send_test(
    engine: Engine, org_id: str, destination_id: str, event_type: str, publish: Publish
) -> WebhookMessage:
    """Send a sample of ``event_type`` to the destination, signed and retried like any
    message; its attempts show how the receiver answered."""
    if event_type not in CATALOGUE:
        raise InvalidInput(
            f"unknown event type {event_type!r}: GET /api/v1/event-types lists them",
            field="event_type",
        )
    kind = CATALOGUE[event_type]
    with transaction(engine) as session:
        destination = get_destination(session, org_id, destination_id)
        body = message_body(kind.name, None, utcnow(), sample(kind))
        message, work_item = add_message(session, destination, event_type=kind.name, body=body)
    _publish(publish, [work_item])
    return message


def delete_destination(session: Session, org_id: str, destination_id: str) -> None:
    """Delete the destination with its messages and their attempts, and take it off every
    rule that sends to it."""
    destination = get_destination(session, org_id, destination_id)
    rules = session.exec(
        select(NotificationRule).where(col(NotificationRule.org_id) == org_id)
    ).all()
    for rule in rules:
        if destination.id in rule.webhook_destination_ids:
            rule.webhook_destination_ids = [
                i for i in rule.webhook_destination_ids if i != destination.id
            ]
            session.add(rule)
    session.exec(delete(WebhookAttempt).where(col(WebhookAttempt.destination_id) == destination.id))
    session.exec(delete(WebhookMessage).where(col(WebhookMessage.destination_id) == destination.id))
    session.delete(destination)


def _publish(publish: Publish, work_items: list[str]) -> None:
    if work_items:
        publish((event_id, WEBHOOK_DELIVER) for event_id in work_items)
