"""The routing of stored events to Celery tasks (``domain.routing``)."""

from __future__ import annotations

import re
from pathlib import Path

from domain import routing
from domain.notifications.emails import SEND_EMAIL
from domain.settings import Settings
from domain.webhooks.messages import WEBHOOK_DELIVER
from receiver.publisher import Publisher

REPO = Path(__file__).resolve().parents[2]


def test_plain_events_travel_in_batches_and_a_type_with_a_task_alone() -> None:
    events = [(f"evt_{n}", "invoice.paid") for n in range(5)] + [("evt_mail", SEND_EMAIL)]
    assert routing.messages(events, batch=2) == [
        (routing.SEND_EMAIL_TASK, ["evt_mail"]),
        (routing.PROCESS_EVENTS_TASK, [["evt_0", "evt_1"]]),
        (routing.PROCESS_EVENTS_TASK, [["evt_2", "evt_3"]]),
        (routing.PROCESS_EVENT_TASK, ["evt_4"]),
    ]
    assert [routing.events_in(args) for _, args in routing.messages(events, batch=2)] == [
        1,
        2,
        2,
        1,
    ]
    assert routing.messages([]) == []


def test_an_event_of_a_batch_retries_on_its_own() -> None:
    assert routing.retry_task(routing.PROCESS_EVENTS_TASK) == routing.PROCESS_EVENT_TASK
    assert routing.retry_task(routing.PROCESS_EVENT_TASK) == routing.PROCESS_EVENT_TASK
    assert routing.retry_task(routing.SEND_EMAIL_TASK) == routing.SEND_EMAIL_TASK


def test_notification_deliveries_have_their_tasks() -> None:
    assert routing.task_for(SEND_EMAIL) == routing.SEND_EMAIL_TASK
    assert routing.task_for(WEBHOOK_DELIVER) == routing.DELIVER_WEBHOOK_TASK
    assert routing.retry_task(routing.DELIVER_WEBHOOK_TASK) == routing.DELIVER_WEBHOOK_TASK
    assert routing.task_for("invoice.paid") == routing.PROCESS_EVENT_TASK


#: Dotted names that are not tasks: a key of ``Session.info`` (``domain.eventlog.APPENDED``).
NOT_TASKS = {"meterbridge.appended"}


def test_no_task_name_is_spelled_outside_the_routing_module() -> None:
    spelled = {
        (str(path.relative_to(REPO)), name)
        for folder in ("domain", "receiver", "tasks", "workers", "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
        if path.name != "test_routing.py"
        for name in re.findall(r"""["'](meterbridge\.[a-z_.]+)["']""", path.read_text())
        if name not in NOT_TASKS
    }
    assert {path for path, _ in spelled} == {"domain/routing.py"}
    assert {name for _, name in spelled} == set(routing.TASKS)


def test_the_readme_names_every_task() -> None:
    readme = (REPO / "README.md").read_text()
    flower = readme.split("**Flower.**", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(meterbridge\.[a-z_]+)`", flower)) == set(routing.TASKS)


def test_the_receivers_publisher_is_a_publish_that_never_blocks() -> None:
    publisher = Publisher(Settings(_env_file=None), max_backlog=2)  # not started
    publish: routing.Publish = publisher.publish_many
    assert publish([("evt_1", "t"), ("evt_2", "t"), ("evt_3", "t")]) == 2
    assert publisher.dropped == 1
