"""Which Celery task processes which event, and the messages that carry stored events to
the workers. Everything that names a task (the ``tasks/`` decorators, beat's schedule, the
receiver's publisher, ``tasks.publish``, Flower queries in tests) takes the name from here.

Every event task runs the same processor; a type has a task of its own only so that Flower
shows it by name. Events of the plain task travel in batches::

    (id, type) pairs --messages()--> process_event(id)           a lone plain event
                                     process_events([id, ...])   up to BATCH_SIZE of them
                                     send_email(id)              a type with its own task
                                     deliver_webhook(id)         (notification deliveries)

No Celery here: the receiver, the workers, the CLI and the admin API each send the
messages their own way, behind one callable type, ``Publish``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: Process one stored event: ``args=[event_id]``.
PROCESS_EVENT_TASK = "meterbridge.process_event"
#: Process a batch of stored events: ``args=[[event_id, ...]]``.
PROCESS_EVENTS_TASK = "meterbridge.process_events"
#: Process one ``email.send`` event (deliver a notification email): ``args=[event_id]``.
SEND_EMAIL_TASK = "meterbridge.send_email"
#: Process one ``webhook.deliver`` work item (send a webhook message): ``args=[event_id]``.
DELIVER_WEBHOOK_TASK = "meterbridge.deliver_webhook"
#: Re-publish what should be on the queue but may not be (beat runs it): no args.
SWEEP_TASK = "meterbridge.sweep"
#: Append the scheduled events (``schedule.*``) of the rules that are due (beat runs it):
#: no args.
SCHEDULED_EVENTS_TASK = "meterbridge.scheduled_events"

#: Every task the workers run.
TASKS = (
    PROCESS_EVENT_TASK,
    PROCESS_EVENTS_TASK,
    SEND_EMAIL_TASK,
    DELIVER_WEBHOOK_TASK,
    SWEEP_TASK,
    SCHEDULED_EVENTS_TASK,
)

#: Event types whose processing has a task of its own: notification deliveries. The keys
#: are ``domain.notifications.emails.SEND_EMAIL`` and ``domain.webhooks.messages.
#: WEBHOOK_DELIVER``, spelled out: importing those modules here would pull every domain
#: table into the receiver's publisher (a unit test keeps them equal).
TASKS_BY_TYPE = {"email.send": SEND_EMAIL_TASK, "webhook.deliver": DELIVER_WEBHOOK_TASK}

#: Most event ids one ``process_events`` message carries.
BATCH_SIZE = 50

#: Sends stored events, given as (event id, event type) pairs, for processing, after the
#: transaction that stored or changed them has committed; returns how many it sent or
#: took. A publish that is lost is not an error: the sweeper finds the event later.
#: ``tasks.publish.enqueue`` (Celery producer; workers and CLI) and
#: ``receiver.publisher.Publisher.publish_many`` (background thread; admin API) are two.
Publish = Callable[[Iterable[tuple[str, str]]], int]


def task_for(event_type: str) -> str:
    """The Celery task that processes events of this type."""
    return TASKS_BY_TYPE.get(event_type, PROCESS_EVENT_TASK)


def retry_task(task_name: str) -> str:
    """The task that retries one event of a message sent to ``task_name``: an event of a
    batch retries on its own."""
    return PROCESS_EVENT_TASK if task_name == PROCESS_EVENTS_TASK else task_name


def messages(
    events: Iterable[tuple[str, str]], batch: int = BATCH_SIZE
) -> list[tuple[str, list[Any]]]:
    """(task name, args) to publish for these (id, type) pairs: events of the plain
    processing task travel in batches, one message for up to ``batch`` events."""
    plain: list[str] = []
    out: list[tuple[str, list[Any]]] = []
    for event_id, event_type in events:
        task = task_for(event_type)
        if task == PROCESS_EVENT_TASK:
            plain.append(event_id)
        else:
            out.append((task, [event_id]))
    for start in range(0, len(plain), batch):
        chunk = plain[start : start + batch]
        out.append(
            (PROCESS_EVENT_TASK, chunk) if len(chunk) == 1 else (PROCESS_EVENTS_TASK, [chunk])
        )
    return out


def events_in(args: list[Any]) -> int:
    """How many events a message built by ``messages`` carries."""
    return len(args[0]) if isinstance(args[0], list) else 1
