"""Matching events against notification rules on the test database: verdicts recorded
once, messages and emails made once per firing, whatever runs the handler again."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlmodel import Session, select

from domain.db import transaction
from domain.eventlog import append_internal
from domain.events import Event
from domain.notifications.emails import Email, notify_disabled
from domain.notifications.matching import match_event
from domain.notifications.rules import NotificationFiring, create_rule
from domain.organisations import DEFAULT_ORG_ID
from domain.processing import inbound
from domain.secrets import secret_box
from domain.sources import Source
from domain.users import create_user
from domain.webhooks.destinations import create_destination
from domain.webhooks.messages import WEBHOOK_DELIVER, WebhookMessage
from tests.domain import factories
from tests.support.environment import Environment

BILL = {
    "bill_id": "bill_1",
    "account_id": "acc_1",
    "version": 1,
    "currency": "USD",
    "period_start": "2026-10-01",
    "period_end": "2026-11-01",
    "total": "6000.00",
}


def setup(env: Environment, calculation: str = "total >= 5000") -> tuple[str, str]:
    """A destination, a user and a rule sending to both; the rule's id and an event's."""
    with transaction(env.engine) as session:
        hook = create_destination(
            session,
            secret_box(env.settings),
            DEFAULT_ORG_ID,
            url="https://1.1.1.1/hook",
            description="",
            user_ids=[],
            check_url=lambda _url: None,
        )
        user = create_user(session, DEFAULT_ORG_ID, name="Ada", email="ada@example.com")
        rule = create_rule(
            session,
            DEFAULT_ORG_ID,
            code="big",
            name="Big bills",
            event_name="bill.approved",
            calculation=calculation,
            webhook_destination_ids=[hook.destination.id],
            user_ids=[user.id],
        )
        event = append_internal(session, org_id=DEFAULT_ORG_ID, type="bill.approved", payload=BILL)
        return rule.id, event.id


def match(env: Environment, event_id: str) -> None:
    with transaction(env.engine) as session:
        event = session.get(Event, event_id)
        assert event is not None
        match_event(session, inbound(event))


def counts(env: Environment) -> tuple[int, int, int, int]:
    with Session(env.engine) as session:
        deliveries = session.exec(select(Event).where(Event.type == WEBHOOK_DELIVER)).all()
        return (
            len(session.exec(select(NotificationFiring)).all()),
            len(session.exec(select(WebhookMessage)).all()),
            len(session.exec(select(Email)).all()),
            len(deliveries),
        )


def test_a_matching_event_fires_once_however_often_it_is_matched(env: Environment) -> None:
    _, event_id = setup(env)
    match(env, event_id)
    match(env, event_id)
    assert counts(env) == (1, 1, 1, 1)


def test_matchers_racing_on_one_event_fire_it_once(env: Environment) -> None:
    _, event_id = setup(env)

    def attempt(_: int) -> str:
        try:
            match(env, event_id)
        except Exception as exc:  # the loser's commit breaks on the firing's uniqueness
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert "ok" in outcomes
    assert counts(env) == (1, 1, 1, 1)


def test_an_event_that_does_not_match_is_recorded_and_sends_nothing(env: Environment) -> None:
    rule_id, event_id = setup(env, calculation='total >= 5000 AND currency == "EUR"')
    match(env, event_id)
    with Session(env.engine) as session:
        [firing] = session.exec(select(NotificationFiring)).all()
    assert (firing.rule_id, firing.fired, firing.reason) == (rule_id, False, "calculation is false")
    assert counts(env)[1:] == (0, 0, 0)


def test_the_message_body_carries_the_event(env: Environment) -> None:
    _, event_id = setup(env)
    match(env, event_id)
    with Session(env.engine) as session:
        [message] = session.exec(select(WebhookMessage)).all()
    body = json.loads(message.body)
    assert body["type"] == "bill.approved"
    assert body["event_id"] == event_id
    assert body["data"] == BILL
    assert datetime.fromisoformat(body["timestamp"]).tzinfo == UTC


def test_a_rules_email_about_a_disabled_notice_does_not_stand_in_for_the_notice(
    env: Environment,
) -> None:
    source_id = factories.source(env)
    with transaction(env.engine) as session:
        user = create_user(session, DEFAULT_ORG_ID, name="Ops", email="ops@example.com")
        source = session.get(Source, source_id)
        assert source is not None
        source.disabled_notification_user_ids = [user.id]
        create_rule(
            session,
            DEFAULT_ORG_ID,
            code="disabled",
            name="Disabled sources",
            event_name="source.disabled",
            always_fire=True,
            user_ids=[user.id],
        )
        notice = append_internal(
            session,
            org_id=DEFAULT_ORG_ID,
            type="source.disabled",
            payload={"source_id": source_id, "consecutive_errors": 10, "reason": "ten"},
        )
    with transaction(env.engine) as session:  # the rule's handler first, then the notice's
        stored = session.get(Event, notice.id)
        assert stored is not None
        match_event(session, inbound(stored))
        notify_disabled(session, inbound(stored))
    with Session(env.engine) as session:
        emails = session.exec(select(Email).where(Email.notice_event_id == notice.id)).all()
    assert sorted(e.firing_id is None for e in emails) == [False, True]
