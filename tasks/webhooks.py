"""``routing.DELIVER_WEBHOOK_TASK``: deliver one webhook message.

The task processes the ``webhook.deliver`` work item like any event (claims, leases, the
sweeper, dead letters) on the webhooks' retry schedule; its handler signs the message with
the destination's secrets and sends it through the SSRF-checked sender. What the answer
means is ``domain.webhooks.delivery``'s to decide.
"""

from __future__ import annotations

from dataclasses import replace

from celery import Task
from sqlmodel import Session

from domain import routing
from domain.clock import utcnow
from domain.eventlog import INTERNAL_PROVIDER
from domain.handlers import InboundEvent, registry
from domain.webhooks.addresses import WebhookUrlRefused
from domain.webhooks.delivery import DeliveryRefused, outgoing, settle
from domain.webhooks.destinations import signing_secrets
from domain.webhooks.messages import WEBHOOK_DELIVER, AttemptRecord, AttemptResult
from domain.webhooks.signing import signature_headers
from tasks.process_event import EVENT_TASK_OPTIONS, process
from workers.celery_app import app
from workers.runtime import runtime
from workers.webhooks.sender import Delivery, Failed, Gone, RetryLater, Succeeded, send


@registry.register(INTERNAL_PROVIDER, WEBHOOK_DELIVER, name="webhooks.deliver", isolated=True)
def deliver(session: Session, event: InboundEvent) -> None:
    sending = outgoing(session, event.payload["message_id"])
    if sending is None:
        return
    rt = runtime()
    now = utcnow()
    body = sending.message.body.encode()
    secrets = signing_secrets(rt.box, sending.destination, now)
    headers = {
        "content-type": "application/json",
        **signature_headers(secrets, sending.message.id, int(now.timestamp()), body),
    }
    try:
        delivery = send(
            sending.destination.url,
            body,
            headers,
            allowed_networks=rt.settings.webhook_allowed_networks,
            timeout=rt.settings.webhook_timeout_seconds,
        )
    except WebhookUrlRefused as refused:
        raise DeliveryRefused(str(refused), started_at=now) from None
    settle(session, sending, replace(attempt_record(delivery), started_at=now))


def attempt_record(delivery: Delivery) -> AttemptRecord:
    """The sender's outcome as the message's history keeps it."""
    seen = AttemptRecord(
        AttemptResult.SUCCEEDED,
        status_code=delivery.status,
        duration_seconds=delivery.duration,
        answer=delivery.answer,
        address=delivery.address,
    )
    match delivery.outcome:
        case Succeeded():
            return seen
        case Gone():
            return replace(seen, result=AttemptResult.GONE, error="410 Gone")
        case RetryLater(retry_after=after):
            error = f"answered {delivery.status}: try later"
            return replace(seen, result=AttemptResult.RETRY_LATER, error=error, retry_after=after)
        case Failed(reason=reason):
            error = f"answered {delivery.status}" if delivery.status else reason
            return replace(seen, result=AttemptResult.FAILED, error=error)
    raise AssertionError(f"unknown outcome {delivery.outcome!r}")


@app.task(name=routing.DELIVER_WEBHOOK_TASK, **EVENT_TASK_OPTIONS)
def deliver_webhook(self: Task, event_id: str) -> str:
    """Deliver the webhook message a ``webhook.deliver`` work item names."""
    return process(self, event_id)
