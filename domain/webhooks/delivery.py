"""What an attempt to deliver a webhook message comes to, as rules over the database.

The delivery task (``tasks/webhooks.py``) reads the message with ``outgoing``, sends it,
and hands the result to ``settle``. A success is recorded in the task's transaction. A
failure is raised as a type the retry policy reads (``DeliveryFailed`` is transient and
follows the webhook schedule, honouring ``Retry-After``; ``DestinationGone`` and
``DeliveryRefused`` are permanent), and since that transaction rolls back, the attempt is
recorded by ``record_failure``, the failure hook, in the transaction that records the
retry or the give-up:

- every failure adds an attempt row to the message;
- a message that gives up is ``failed`` and counts one failure of its destination (the
  tenth in a row disables it: ``domain.failures``);
- a 410 disables the destination at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from domain.clock import utcnow
from domain.errors import PermanentError, TransientError
from domain.eventlog import INTERNAL_PROVIDER
from domain.failures import count_failure, count_success, disable
from domain.handlers import InboundEvent, registry
from domain.logs import describe_error
from domain.retry import Decision, GiveUp
from domain.webhooks.destinations import WebhookDestination
from domain.webhooks.messages import (
    WEBHOOK_DELIVER,
    AttemptRecord,
    AttemptResult,
    MessageStatus,
    WebhookMessage,
    hold,
    mark_failed,
    record_attempt,
)


class DeliveryFailed(TransientError):
    """The receiver did not take the message; it is tried again on the schedule."""

    def __init__(self, record: AttemptRecord, retry_after: float | None = None) -> None:
        super().__init__(record.error or "not delivered", retry_after=retry_after)
        self.record = record


class DestinationGone(PermanentError):
    """The receiver answered 410 Gone: the destination is disabled."""

    def __init__(self, record: AttemptRecord) -> None:
        super().__init__(record.error or "410 Gone")
        self.record = record


class DeliveryRefused(PermanentError):
    """The SSRF policy refused the URL or an address it resolves to: nothing was sent."""

    def __init__(self, reason: str, started_at: datetime | None = None) -> None:
        super().__init__(reason)
        self.record = AttemptRecord(AttemptResult.REFUSED, error=reason, started_at=started_at)


#: A failed message is sent again when its dead work item is replayed from the dead letters.
SENDABLE = (MessageStatus.PENDING, MessageStatus.FAILED)


def reopen(message: WebhookMessage) -> None:
    """A failed message being tried again is pending until that try's outcome."""
    if message.status == MessageStatus.FAILED:
        message.status, message.failed_at = MessageStatus.PENDING, None


@dataclass(frozen=True, slots=True)
class Outgoing:
    message: WebhookMessage
    destination: WebhookDestination


def outgoing(session: Session, message_id: str) -> Outgoing | None:
    """The message to send now, or None: already delivered or given up, gone, or held
    because its destination is disabled (enabling it releases the message)."""
    message = session.get(WebhookMessage, message_id)
    if message is None or message.status not in SENDABLE:
        return None
    destination = session.get(WebhookDestination, message.destination_id)
    if destination is None:
        return None
    if not destination.enabled:
        hold(session, message)
        return None
    reopen(message)
    return Outgoing(message, destination)


def settle(session: Session, sent: Outgoing, record: AttemptRecord) -> None:
    """Record a success, or raise the failure for the retry policy and ``record_failure``."""
    match record.result:
        case AttemptResult.SUCCEEDED:
            record_attempt(session, sent.message, record, utcnow())
            count_success(session, WebhookDestination, sent.destination.id)
        case AttemptResult.GONE:
            raise DestinationGone(record)
        case AttemptResult.REFUSED:
            raise DeliveryRefused(record.error or "refused", record.started_at)
        case _:
            raise DeliveryFailed(record, record.retry_after)


@registry.on_failure(INTERNAL_PROVIDER, WEBHOOK_DELIVER)
def record_failure(
    session: Session, event: InboundEvent, error: BaseException, decision: Decision
) -> None:
    message = session.get(WebhookMessage, event.payload["message_id"])
    if message is None:
        return
    now = utcnow()
    record = getattr(error, "record", None)
    if not isinstance(record, AttemptRecord):  # a bug or an outage, not an answer
        record = AttemptRecord(AttemptResult.FAILED, error=describe_error(error)[:2000])
    record_attempt(session, message, record, now)
    reopen(message)  # the attempt's transaction, which may have reopened it, rolled back
    if isinstance(error, DestinationGone):
        reason = "the receiver answered 410 Gone"
        disable(session, WebhookDestination, message.destination_id, reason=reason, now=now)
    if isinstance(decision, GiveUp):
        mark_failed(session, message, now)
        if not isinstance(error, DestinationGone):
            count_failure(
                session, WebhookDestination, message.destination_id, now=now, caused_by=event.id
            )
