"""Notification rules end to end: a rule created in one API call, real workers matching
emitted events, signed webhooks to a real HTTP receiver (verified with the
``standardwebhooks`` package), emails to a real SMTP server, retries, history, replay and
auto-disable."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col
from standardwebhooks import Webhook

from domain.clock import utcnow
from domain.db import transaction
from domain.events import Event, EventStatus
from domain.notifications.matching import scheduled_key
from domain.notifications.rules import NotificationRule
from domain.secrets import secret_box
from domain.sources import create_source
from domain.webhooks.destinations import WebhookDestination
from tests.conftest import outside_env
from tests.support.billing import Api
from tests.support.environment import Environment, make_env
from tests.support.fake_chargebee import FakeChargebee
from tests.support.processes import Stack, wait_for
from tests.support.smtp import SmtpServer, text_of
from tests.support.webhook_receiver import Answer, Received, Receiver
from tests.support.webhooks import send, status_of

#: Retries a second apart: a message gives up after its third attempt.
SCHEDULE = "1,1"
PERIOD = {"period_start": "2026-10-01", "period_end": "2026-11-01"}


@pytest.fixture(scope="module")
def notify_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    environment = make_env(
        tmp_path_factory.mktemp("notify"),
        webhook_allowed_networks="127.0.0.0/8",
        webhook_retry_schedule=SCHEDULE,
        webhook_timeout_seconds=5,
        schedule_check_seconds=1,
        # a killed worker's claim is taken over once its lease (this + 5 s) runs out
        task_time_limit_seconds=8,
    )
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def notify_stack(
    notify_env: Environment,
    fake_chargebee: FakeChargebee,
    smtp_server: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    processes = Stack(notify_env, tmp_path_factory.mktemp("notify-logs"))
    try:
        with processes.side_by_side():
            processes.start_receiver()
            processes.start_worker(concurrency=4, **outside_env(fake_chargebee, smtp_server))
            processes.start_beat()
        yield processes
    finally:
        processes.close()


@pytest.fixture
def api(notify_stack: Stack) -> Iterator[Api]:
    client = Api(notify_stack.env, notify_stack.receiver_url)
    yield client
    client.http.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def destination(api: Api, receiver: Receiver, path: str = "/hook", **fields: Any) -> dict:
    url = f"http://127.0.0.1:{receiver.port}{path}"
    return api.post("/api/v1/webhook-destinations", {"url": url, **fields})


def rule(api: Api, event_name: str, **fields: Any) -> dict:
    code = fields.pop("code", f"rule-{uuid.uuid4().hex[:8]}")
    return api.post(
        "/api/v1/notification-rules",
        {"code": code, "name": code, "event_name": event_name, **fields},
    )


def approved_bill(api: Api, total: str, currency: str = "USD") -> dict:
    """A bill of its own account, approved."""
    account_id = api.account()["id"]
    line = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": total, "subtotal": total}
    bill = api.post(
        "/api/v1/bills",
        {"account_id": account_id, "currency": currency, "line_items": [line], **PERIOD},
    )
    return api.approve(bill["id"])


def verified(received: Received, *secrets: str) -> dict:
    """The message, verified with each secret in turn by the reference implementation."""
    headers = {
        name: value for name, value in received.headers.items() if name.startswith("webhook-")
    }
    payload: dict = {}
    for secret in secrets:
        payload = Webhook(secret).verify(received.body, headers)
    return payload


def processed(api: Api, event_type: str, count: int) -> list[dict]:
    """Wait until ``count`` events of the type are processed (their rules matched)."""
    seen: list[dict] = []

    def done() -> bool:
        seen[:] = api.get("/api/v1/events", type=event_type)
        return len(seen) >= count and all(e["status"] == "processed" for e in seen)

    wait_for(done, timeout=60, what=f"{count} {event_type} events processed")
    return seen


def messages(api: Api, destination_id: str, **filters: Any) -> list[dict]:
    return api.get(f"/api/v1/webhook-destinations/{destination_id}/messages", **filters)


def settled(api: Api, destination_id: str, count: int) -> list[dict]:
    """Wait until ``count`` messages of the destination are no longer pending."""
    found: list[dict] = []

    def done() -> bool:
        found[:] = messages(api, destination_id)
        return len(found) >= count and all(m["status"] != "pending" for m in found)

    wait_for(done, timeout=60, what=f"{count} messages settled")
    return found


def test_a_rule_sends_signed_webhooks_for_exactly_the_events_that_match(
    api: Api, receiver: Receiver
) -> None:
    hook = destination(api, receiver)
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/api/v1/webhook-destinations/{hook['id']}")
    big = rule(
        api,
        "bill.approved",
        calculation='total >= 5000 AND currency == "USD"',
        webhook_destination_ids=[hook["id"]],
    )
    matching = approved_bill(api, "6000.00")
    approved_bill(api, "4999.99")
    approved_bill(api, "7000.00", currency="EUR")

    processed(api, "bill.approved", 3)
    [message] = settled(api, hook["id"], 1)
    assert message["status"] == "succeeded"
    [request] = receiver.requests
    payload = verified(request, hook["secret"])
    assert payload["type"] == "bill.approved"
    assert payload["data"]["bill_id"] == matching["id"]
    assert payload["data"]["total"] == "6000.00"
    assert request.headers["webhook-id"] == message["id"]

    firings = api.get(f"/api/v1/notification-rules/{big['id']}/firings")
    assert sorted(f["fired"] for f in firings) == [False, False, True]


def attempts(api: Api, destination_id: str, **filters: Any) -> list[dict]:
    """The destination's attempts, oldest first."""
    found = api.get(f"/api/v1/webhook-destinations/{destination_id}/attempts", **filters)
    return list(reversed(found))


def send_test(api: Api, destination_id: str, event_type: str = "bill.approved") -> dict:
    return api.post(
        f"/api/v1/webhook-destinations/{destination_id}/test",
        {"event_type": event_type},
        status=202,
    )


def answers(*scripted: Answer, then: Answer | None = None) -> Any:
    """Answer each request with the next scripted answer, then with ``then`` (200)."""
    queue = list(scripted)

    def answer(_request: Received) -> Answer:
        return queue.pop(0) if queue else (then or Answer())

    return answer


def test_a_failed_attempt_is_retried_with_the_same_id_and_every_attempt_is_recorded(
    api: Api, receiver: Receiver
) -> None:
    receiver.answer = answers(Answer(500, body=b"database down"))
    hook = destination(api, receiver)
    message = send_test(api, hook["id"])
    [done] = settled(api, hook["id"], 1)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    first, second = attempts(api, hook["id"], message_id=message["id"])
    assert (first["result"], first["status_code"], first["answer"]) == (
        "failed",
        500,
        "database down",
    )
    assert (second["result"], second["status_code"]) == ("succeeded", 200)
    assert first["duration_ms"] is not None
    assert first["address"] == "127.0.0.1"
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert ids == {message["id"]}
    for request in receiver.requests:
        assert verified(request, hook["secret"])["type"] == "bill.approved"


def test_retry_after_of_a_429_is_honoured(api: Api, receiver: Receiver) -> None:
    receiver.answer = answers(Answer(429, headers={"Retry-After": "3"}))
    hook = destination(api, receiver)
    send_test(api, hook["id"])
    settled(api, hook["id"], 1)
    first, second = attempts(api, hook["id"])
    assert first["result"] == "retry_later"
    waited = _seconds_between(first["attempted_at"], second["attempted_at"])
    assert waited >= 3, f"the retry came {waited:.2f}s after a Retry-After of 3s"


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_a_redirect_is_a_failure_and_is_not_followed(api: Api, receiver: Receiver) -> None:
    with Receiver() as elsewhere:
        moved = Answer(302, headers={"Location": f"http://127.0.0.1:{elsewhere.port}/x"})
        receiver.answer = answers(then=moved)
        hook = destination(api, receiver)
        send_test(api, hook["id"])
        [message] = settled(api, hook["id"], 1)
        elsewhere.settle()
        assert elsewhere.connections == []
    assert message["status"] == "failed"
    assert [a["status_code"] for a in attempts(api, hook["id"])] == [302, 302, 302]


def test_410_disables_the_destination_emails_its_users_and_enabling_sends_what_was_held(
    api: Api, receiver: Receiver, smtp_server: SmtpServer
) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    user = api.post("/api/v1/users", {"name": "Ops", "email": email})
    receiver.answer = answers(Answer(410))
    hook = destination(api, receiver, disabled_notification_user_ids=[user["id"]])
    gone = send_test(api, hook["id"])
    settled(api, hook["id"], 1)
    shown = api.get(f"/api/v1/webhook-destinations/{hook['id']}")
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    wait_for(lambda: smtp_server.to(email), timeout=60, what="the disabled notice")
    [notice] = smtp_server.to(email)
    assert hook["id"] in text_of(notice)

    held = send_test(api, hook["id"])
    wait_for(lambda: messages(api, hook["id"], status="held"), timeout=60, what="the message held")
    assert len(receiver.requests) == 1
    enabled = api.post(f"/api/v1/webhook-destinations/{hook['id']}/enable")
    assert (enabled["enabled"], enabled["released"]) == (True, 1)
    wait_for(lambda: messages(api, hook["id"], status="succeeded"), timeout=60, what="the release")
    assert [m["id"] for m in messages(api, hook["id"], status="succeeded")] == [held["id"]]
    assert [m["id"] for m in messages(api, hook["id"], status="failed")] == [gone["id"]]


def test_ten_failed_messages_disable_the_destination_and_replay_sends_them_again(
    api: Api, receiver: Receiver
) -> None:
    receiver.answer = answers(then=Answer(500))
    hook = destination(api, receiver)
    for _ in range(10):
        send_test(api, hook["id"])
    settled(api, hook["id"], 10)
    wait_for(
        lambda: not api.get(f"/api/v1/webhook-destinations/{hook['id']}")["enabled"],
        timeout=60,
        what="the destination disabled",
    )
    assert len(messages(api, hook["id"], status="failed")) == 10
    assert api.get("/api/v1/events", type="webhook_destination.disabled")

    receiver.answer = answers()
    api.post(f"/api/v1/webhook-destinations/{hook['id']}/enable")
    path = f"/api/v1/webhook-destinations/{hook['id']}/replay"
    dry = api.post(path, {"all": True, "dry_run": True})
    assert (dry["dry_run"], len(dry["message_ids"])) == (True, 10)
    assert len(messages(api, hook["id"], status="failed")) == 10
    one = api.post(path, {"message_ids": dry["message_ids"][:1]})
    assert one["message_ids"] == dry["message_ids"][:1]
    rest = api.post(path, {"all": True})
    assert sorted(rest["message_ids"] + one["message_ids"]) == sorted(dry["message_ids"])
    wait_for(
        lambda: len(messages(api, hook["id"], status="succeeded")) == 10,
        timeout=60,
        what="every replayed message delivered",
    )
    assert api.post(path, {"all": True})["message_ids"] == []


def test_a_rotated_secret_keeps_signing_beside_the_new_one_during_the_overlap(
    api: Api, receiver: Receiver
) -> None:
    hook = destination(api, receiver)
    rotated = api.post(f"/api/v1/webhook-destinations/{hook['id']}/rotate-secret", status=200)
    assert rotated["secret"] != hook["secret"]
    assert rotated["previous_secret_until"] is not None
    send_test(api, hook["id"])
    settled(api, hook["id"], 1)
    [request] = receiver.requests
    verified(request, hook["secret"], rotated["secret"])
    assert len(request.headers["webhook-signature"].split(" ")) == 2

    ended = api.post(
        f"/api/v1/webhook-destinations/{hook['id']}/rotate-secret",
        {"overlap_hours": 0},
        status=200,
    )
    send_test(api, hook["id"])
    settled(api, hook["id"], 2)
    latest = receiver.requests[-1]
    verified(latest, ended["secret"])
    with pytest.raises(Exception, match="No matching signature"):
        verified(latest, rotated["secret"])


def test_one_event_fans_out_to_a_hundred_destinations_each_message_delivered_once(
    api: Api, receiver: Receiver
) -> None:
    hooks = [destination(api, receiver, path=f"/d{n}") for n in range(100)]
    rule(api, "bill.approved", always_fire=True, webhook_destination_ids=[h["id"] for h in hooks])
    approved_bill(api, "10.00")
    wait_for(lambda: len(receiver.requests) >= 100, timeout=120, what="100 deliveries")
    for hook in hooks[:3] + hooks[-3:]:
        [message] = settled(api, hook["id"], 1)
        assert message["status"] == "succeeded"
    receiver.settle()
    paths = sorted(request.path for request in receiver.requests)
    assert paths == sorted(f"/d{n}" for n in range(100))
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert len(ids) == 100
    secrets = {h["id"]: h["secret"] for h in hooks}
    by_path = {f"/d{n}": hooks[n]["id"] for n in range(100)}
    for request in receiver.requests:
        verified(request, secrets[by_path[request.path]])


def test_a_rule_emails_its_users_with_the_event(api: Api, smtp_server: SmtpServer) -> None:
    email = f"finance-{uuid.uuid4().hex[:8]}@example.com"
    user = api.post("/api/v1/users", {"name": "Finance <Team>", "email": email})
    rule(api, "bill.approved", calculation="total > 100", user_ids=[user["id"]])
    bill = approved_bill(api, "250.00")
    approved_bill(api, "50.00")
    wait_for(lambda: smtp_server.to(email), timeout=60, what="the rule's email")
    processed(api, "email.send", 1)
    [sent] = smtp_server.to(email)
    assert bill["id"] in sent["Subject"] or bill["id"] in text_of(sent)
    assert "250.00" in text_of(sent)


def test_a_worker_killed_mid_send_sends_the_message_again_under_the_same_id(
    api: Api,
    receiver: Receiver,
    notify_stack: Stack,
    fake_chargebee: FakeChargebee,
    smtp_server: SmtpServer,
) -> None:
    receiver.answer = answers(Answer(delay=4))
    hook = destination(api, receiver)
    fired = rule(api, "bill.approved", always_fire=True, webhook_destination_ids=[hook["id"]])
    approved_bill(api, "10.00")
    wait_for(lambda: receiver.requests, timeout=60, what="the first attempt in flight")
    for worker in [p for p in notify_stack.procs if p.name == "worker"]:
        worker.kill(signal.SIGKILL)
    notify_stack.start_worker(concurrency=4, **outside_env(fake_chargebee, smtp_server))

    wait_for(
        lambda: messages(api, hook["id"], status="succeeded"), timeout=90, what="the message sent"
    )
    [message] = messages(api, hook["id"])
    assert len(receiver.requests) >= 2
    assert {r.headers["webhook-id"] for r in receiver.requests} == {message["id"]}
    [firing] = api.get(f"/api/v1/notification-rules/{fired['id']}/firings")
    assert firing["fired"] is True


def dead_letter(env: Environment, api: Api, base_url: str) -> str:
    """An event of the organisation that its handler refuses for good: a dead letter."""
    with transaction(env.engine) as session:
        source, secret = create_source(
            session, secret_box(env.settings), org_id=api.org_id, name="s", provider="generic"
        )
    with httpx.Client() as client:
        response = send(client, base_url, source.id, secret, "test.permanent")
    assert response.status_code in (200, 202), response.text
    event_id: str = response.json()["event_id"]
    wait_for(
        lambda: status_of(env, event_id) == EventStatus.DEAD, timeout=60, what="the dead letter"
    )
    return event_id


def test_beat_emits_a_due_scheduled_event_once_and_its_rule_sends_one_webhook(
    notify_stack: Stack, api: Api, receiver: Receiver
) -> None:
    env = notify_stack.env
    hook = destination(api, receiver)
    scheduled = rule(
        api,
        "schedule.dead_letters",
        schedule_every_seconds=60,
        calculation="count > 0",
        webhook_destination_ids=[hook["id"]],
    )
    dead_id = dead_letter(env, api, notify_stack.receiver_url)
    due = utcnow() - timedelta(minutes=5)
    with transaction(env.engine) as session:  # as if its time had come while beat was away
        session.exec(
            sa.update(NotificationRule)
            .where(col(NotificationRule.id) == scheduled["id"])
            .values(next_fire_at=due)
        )

    wait_for(lambda: receiver.requests, timeout=60, what="the scheduled event's webhook")

    [request] = receiver.requests
    message = verified(request, hook["secret"])
    assert message["type"] == "schedule.dead_letters"
    assert message["data"]["count"] >= 1
    assert message["data"]["oldest_event_id"] == dead_id
    [event] = api.get("/api/v1/events", type="schedule.dead_letters")
    with Session(env.engine) as session:
        logged = session.get(Event, event["id"])
        stored = session.get(NotificationRule, scheduled["id"])
    assert logged is not None
    assert logged.external_id == scheduled_key(scheduled["id"], due.isoformat())
    # the missed due time was emitted once and the schedule goes on from the check
    assert stored is not None
    assert stored.next_fire_at is not None
    assert stored.next_fire_at > utcnow() + timedelta(seconds=30)
    # beat keeps checking every second: the due time is not emitted again
    time.sleep(3)
    assert len(receiver.requests) == 1
    assert len(api.get("/api/v1/events", type="schedule.dead_letters")) == 1


def test_an_answer_slower_than_the_timeout_is_a_failed_attempt_then_retried(
    api: Api, receiver: Receiver
) -> None:
    receiver.answer = answers(Answer(delay=7))  # past the stack's 5 s timeout
    hook = destination(api, receiver)
    send_test(api, hook["id"])
    [message] = settled(api, hook["id"], 1)
    assert message["status"] == "succeeded"
    first, second = attempts(api, hook["id"])
    assert (first["result"], first["status_code"]) == ("failed", None)
    assert "no answer within 5s" in first["error"]
    assert first["duration_ms"] < 6000
    assert second["result"] == "succeeded"


def test_an_address_refused_at_send_time_fails_the_message_without_a_connection(
    api: Api, notify_stack: Stack, receiver: Receiver
) -> None:
    hook = destination(api, receiver)
    # Changed behind the API's back (as a DNS answer can change after a save): 0.0.0.0 is
    # refused, and a connection to it would reach the receiver listening on loopback.
    inside = f"http://0.0.0.0:{receiver.port}/hook"
    with transaction(notify_stack.env.engine) as session:
        session.exec(
            sa.update(WebhookDestination)
            .where(col(WebhookDestination.id) == hook["id"])
            .values(url=inside)
        )
    send_test(api, hook["id"])
    [message] = settled(api, hook["id"], 1)
    receiver.settle()
    assert receiver.connections == []
    assert message["status"] == "failed"
    [attempt] = attempts(api, hook["id"])
    assert attempt["result"] == "refused"
    assert attempt["address"] is None
    assert "0.0.0.0" in attempt["error"]  # noqa: S104 (text, not a bind)


def test_a_failed_messages_dead_work_item_replayed_from_the_dead_letters_sends_it_again(
    api: Api, receiver: Receiver
) -> None:
    receiver.answer = answers(then=Answer(503))
    hook = destination(api, receiver)
    message = send_test(api, hook["id"])
    [failed] = settled(api, hook["id"], 1)
    assert failed["status"] == "failed"
    dead = [
        e
        for e in api.get("/api/v1/dead-letters", type="webhook.deliver")
        if api.get(f"/api/v1/events/{e['id']}")["payload"] == {"message_id": message["id"]}
    ]
    assert len(dead) == 1

    receiver.answer = answers()
    api.post("/api/v1/dead-letters/replay", {"event_ids": [dead[0]["id"]]})
    wait_for(lambda: messages(api, hook["id"], status="succeeded"), timeout=60, what="sent again")
    assert [a["result"] for a in attempts(api, hook["id"])][-1] == "succeeded"
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
