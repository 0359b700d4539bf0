"""``routing.SEND_EMAIL_TASK``: deliver one notification email.

The task processes the ``email.send`` event like any event (claim, retries with backoff,
dead letters); its handler sends through SMTP and marks the email sent in the same
transaction as the ledger row, so a redelivered task finds it sent and does nothing.
"""

from __future__ import annotations

from celery import Task
from sqlmodel import Session

from domain import routing
from domain.eventlog import INTERNAL_PROVIDER
from domain.handlers import InboundEvent, registry
from domain.notifications.emails import SEND_EMAIL, Email, EmailStatus, mark_sent
from tasks.process_event import EVENT_TASK_OPTIONS, process
from workers.celery_app import app
from workers.mail import deliver
from workers.runtime import runtime


@registry.register(INTERNAL_PROVIDER, SEND_EMAIL, name="notifications.send_email", isolated=True)
def send(session: Session, event: InboundEvent) -> None:
    email = session.get(Email, event.payload["email_id"])
    if email is None or email.status == EmailStatus.SENT:
        return
    message_id = deliver(runtime().settings, email)
    mark_sent(session, email.id, message_id)


@app.task(name=routing.SEND_EMAIL_TASK, **EVENT_TASK_OPTIONS)
def send_email(self: Task, event_id: str) -> str:
    """Deliver the email an ``email.send`` event names."""
    return process(self, event_id)
