"""Scheduled events (``schedule.*``): the figures of each type, scoped to the organisation,
over the window; ``emit_due`` appending each due time of a rule once (also when two run
at the same moment), skipping missed ticks; and the event firing its own rule only."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from domain.accounts import create_account
from domain.bills import Bill, BillStatus
from domain.catalogue import CATALOGUE
from domain.db import transaction
from domain.eventlog import INTERNAL_PROVIDER, new_event_id
from domain.events import Event, EventStatus
from domain.integrations.configs import IntegrationConfig
from domain.integrations.runs import IntegrationRun, RunStatus
from domain.notifications.matching import match_event, scheduled_key
from domain.notifications.rules import NotificationFiring, NotificationRule, create_rule
from domain.notifications.scheduled import (
    FIGURES,
    Window,
    bills_awaiting_approval,
    dead_letters,
    emit_due,
    integration_health,
)
from domain.organisations import create_organisation
from domain.processing import inbound
from domain.users import create_user
from tests.support.environment import Environment

NOW = datetime(2026, 11, 2, 9, 0, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
#: The window the figure tests read: the hour before 09:00.
WINDOW = Window(start=NOW.replace(second=0) - HOUR, end=NOW.replace(second=0), now=NOW)


def new_org(env: Environment, name: str = "Acme") -> str:
    with transaction(env.engine) as session:
        return create_organisation(session, name)[0].id


def read(env: Environment, figures: Callable[[Session, str, Window], Any], org_id: str) -> Any:
    with Session(env.engine) as session:
        return figures(session, org_id, WINDOW).model_dump(mode="json")


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- the figures -----------------------------------------------------------------------------


def dead_event(
    session: Session, org_id: str, dead_at: datetime | None, status: str = EventStatus.DEAD
) -> str:
    event = Event(
        id=new_event_id(),
        org_id=org_id,
        provider=INTERNAL_PROVIDER,
        type="test.thing",
        received_at=NOW - 10 * HOUR,
        payload="{}",
        status=status,
        dead_at=dead_at,
    )
    session.add(event)
    return event.id


def test_dead_letters_counts_the_open_ones_of_the_organisation_and_ages_the_oldest(
    env: Environment,
) -> None:
    org_id, other = new_org(env), new_org(env, "Other")
    assert read(env, dead_letters, org_id) == {
        "count": 0,
        "oldest_age_seconds": None,
        "oldest_event_id": None,
        "died_in_window": 0,
        "window_start": at(WINDOW.start),
        "window_end": at(WINDOW.end),
        "evaluated_at": at(NOW),
    }
    with transaction(env.engine) as session:
        oldest = dead_event(session, org_id, NOW - 3 * HOUR)
        dead_event(session, org_id, WINDOW.start)  # in the window: its start is in it
        dead_event(session, org_id, WINDOW.start)
        dead_event(session, org_id, WINDOW.end)  # after the window: its end is not
        dead_event(session, org_id, None, status=EventStatus.PENDING)  # replayed: not dead
        dead_event(session, org_id, None, status=EventStatus.PROCESSED)
        dead_event(session, other, NOW - 9 * HOUR)  # another organisation's

    figures = read(env, dead_letters, org_id)

    assert figures["count"] == 4
    assert figures["oldest_event_id"] == oldest
    assert figures["oldest_age_seconds"] == 3 * 3600
    assert figures["died_in_window"] == 2
    assert read(env, dead_letters, other)["count"] == 1


def bill(
    session: Session,
    org_id: str,
    account_id: str,
    month: int,
    created_at: datetime,
    approved_at: datetime | None = None,
) -> str:
    row = Bill(
        org_id=org_id,
        account_id=account_id,
        period_start=date(2026, month, 1),
        period_end=date(2026, month + 1, 1),
        currency="USD",
        status=BillStatus.APPROVED if approved_at else BillStatus.GENERATED,
        approved_at=approved_at,
        created_at=created_at,
    )
    session.add(row)
    return row.id


def test_bills_awaiting_approval_counts_those_not_approved_and_ages_the_first_generated(
    env: Environment,
) -> None:
    org_id, other = new_org(env), new_org(env, "Other")
    with transaction(env.engine) as session:
        mine = create_account(session, org_id, code="c1", name="Initech").id
        theirs = create_account(session, other, code="c1", name="Hooli").id
        oldest = bill(session, org_id, mine, 1, NOW - 50 * HOUR)
        bill(session, org_id, mine, 2, WINDOW.start + timedelta(minutes=5))  # in the window
        bill(session, org_id, mine, 6, WINDOW.start)
        bill(session, org_id, mine, 3, WINDOW.end)  # after it
        bill(session, org_id, mine, 4, NOW - 90 * HOUR, approved_at=WINDOW.start)
        bill(session, org_id, mine, 5, NOW - 90 * HOUR, approved_at=WINDOW.start - HOUR)
        bill(session, org_id, mine, 7, NOW - 90 * HOUR, approved_at=WINDOW.end)
        bill(session, other, theirs, 1, NOW - 99 * HOUR)

    figures = read(env, bills_awaiting_approval, org_id)

    assert figures == {
        "count": 4,
        "oldest_age_seconds": 50 * 3600,
        "oldest_bill_id": oldest,
        "generated_in_window": 2,
        "approved_in_window": 1,
        "window_start": at(WINDOW.start),
        "window_end": at(WINDOW.end),
        "evaluated_at": at(NOW),
    }
    assert read(env, bills_awaiting_approval, other)["count"] == 1
    assert read(env, bills_awaiting_approval, new_org(env, "Empty"))["oldest_bill_id"] is None


def config(session: Session, org_id: str, name: str, **fields: Any) -> IntegrationConfig:
    row = IntegrationConfig(org_id=org_id, name=name, destination="chargebee", **fields)
    session.add(row)
    session.flush()
    return row


def runs(
    session: Session, cfg: IntegrationConfig, bill_id: str, *ended: tuple[str, datetime | None]
) -> None:
    for status, finished_at in ended:
        session.add(
            IntegrationRun(
                org_id=cfg.org_id,
                config_id=cfg.id,
                bill_id=bill_id,
                trigger="bill.approved",
                trigger_event_id="evt_x",
                status=status,
                finished_at=finished_at,
            )
        )


def test_integration_health_gives_each_config_s_runs_and_errors_in_the_window(
    env: Environment,
) -> None:
    org_id, other = new_org(env), new_org(env, "Other")
    inside, before = WINDOW.start + timedelta(minutes=1), WINDOW.start - timedelta(seconds=1)
    with transaction(env.engine) as session:
        account = create_account(session, org_id, code="c1", name="Initech").id
        bill_id = bill(session, org_id, account, 1, NOW - 50 * HOUR)
        healthy = config(session, org_id, "healthy")
        failing = config(session, org_id, "failing", consecutive_errors=4)
        off = config(session, org_id, "off", enabled=False, consecutive_errors=10)
        runs(
            session,
            healthy,
            bill_id,
            (RunStatus.COMPLETE, inside),
            (RunStatus.COMPLETE, WINDOW.start),
            (RunStatus.ERROR, before),  # before the window
            (RunStatus.COMPLETE, WINDOW.end),  # after it
            (RunStatus.AWAITING_RETRY, None),  # not finished
            (RunStatus.STARTED, inside),  # replayed: running again, its last end kept
        )
        runs(
            session,
            failing,
            bill_id,
            (RunStatus.ERROR, inside),
            (RunStatus.AUTH_FAILED, inside),
            (RunStatus.COMPLETE, inside),
        )
        theirs_account = create_account(session, other, code="c1", name="Hooli").id
        theirs = config(session, other, "theirs", consecutive_errors=99)
        runs(
            session, theirs, bill(session, other, theirs_account, 1, NOW), (RunStatus.ERROR, inside)
        )

    figures = read(env, integration_health, org_id)

    assert figures["configs"] == [
        {
            "config_id": cfg.id,
            "name": cfg.name,
            "destination": "chargebee",
            "enabled": cfg.enabled,
            "runs": count,
            "errors": errors,
            "consecutive_errors": cfg.consecutive_errors,
        }
        for cfg, count, errors in sorted(
            [(healthy, 2, 0), (failing, 3, 2), (off, 0, 0)], key=lambda row: row[0].id
        )
    ]
    assert {key: value for key, value in figures.items() if key != "configs"} == {
        "window_start": at(WINDOW.start),
        "window_end": at(WINDOW.end),
        "evaluated_at": at(NOW),
        "runs": 5,
        "errors": 2,
        "configs_failing": 1,
        "max_consecutive_errors": 10,
        "disabled_configs": 1,
    }
    empty = read(env, integration_health, new_org(env, "Empty"))
    assert (empty["configs"], empty["runs"], empty["max_consecutive_errors"]) == ([], 0, 0)


def test_every_scheduled_type_of_the_catalogue_has_its_figures() -> None:
    assert set(FIGURES) == {name for name in CATALOGUE if name.startswith("schedule.")}


# --- emit_due --------------------------------------------------------------------------------


def scheduled_rule(
    env: Environment,
    org_id: str,
    event_name: str = "schedule.dead_letters",
    *,
    due: datetime | None,
    active: bool = True,
    **fields: Any,
) -> str:
    """A rule on the scheduled type, emailing a user, whose next due time is ``due``."""
    if "schedule_cron" not in fields:
        fields.setdefault("schedule_every_seconds", 3600)
    fields.setdefault("always_fire", "calculation" not in fields)
    with transaction(env.engine) as session:
        user = create_user(session, org_id, "Ops", f"ops-{new_event_id()}@example.com")
        rule = create_rule(
            session,
            org_id,
            code=f"r-{new_event_id()}",
            name="watch",
            event_name=event_name,
            user_ids=[user.id],
            **fields,
        )
        rule.next_fire_at, rule.active = due, active
        session.add(rule)
    return rule.id


def next_fire_at(env: Environment, rule_id: str) -> datetime | None:
    with Session(env.engine) as session:
        rule = session.get(NotificationRule, rule_id)
        assert rule is not None
        return rule.next_fire_at


def emit(env: Environment, now: datetime = NOW) -> list[tuple[str, str]]:
    with transaction(env.engine) as session:
        return emit_due(session, now, limit=100)


def scheduled_events(env: Environment, org_id: str | None = None) -> list[Event]:
    with Session(env.engine) as session:
        statement = select(Event).where(col(Event.type).startswith("schedule."))
        if org_id:
            statement = statement.where(col(Event.org_id) == org_id)
        return list(session.exec(statement.order_by(col(Event.id))))


def payload_of(event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(event.payload)
    model = CATALOGUE[event.type].validate(payload)
    assert model.model_dump(mode="json") == payload
    return payload


def test_a_due_rule_emits_its_event_once_with_its_key_and_figures(env: Environment) -> None:
    org_id = new_org(env)
    due = NOW - timedelta(seconds=20)
    with transaction(env.engine) as session:
        oldest = dead_event(session, org_id, NOW - 2 * HOUR)
    rule_id = scheduled_rule(env, org_id, due=due, schedule_every_seconds=600)

    emitted = emit(env)

    [event] = scheduled_events(env)
    assert emitted == [(event.id, "schedule.dead_letters")]
    assert (event.org_id, event.provider) == (org_id, INTERNAL_PROVIDER)
    assert event.external_id == scheduled_key(rule_id, due.isoformat())
    assert event.external_id == f"rule:{rule_id}:2026-11-02T09:00:00+00:00"
    assert payload_of(event) == {
        "count": 1,
        "oldest_age_seconds": 2 * 3600,
        "oldest_event_id": oldest,
        "died_in_window": 0,
        "window_start": at(due - timedelta(seconds=600)),  # the first: one interval back
        "window_end": at(due),
        "evaluated_at": at(NOW),
    }
    assert next_fire_at(env, rule_id) == due + timedelta(seconds=600)
    # and the same due time is not emitted again
    assert emit(env) == []
    assert emit(env, NOW + timedelta(seconds=30)) == []
    assert len(scheduled_events(env)) == 1


def test_a_rule_not_due_inactive_or_on_another_schedule_emits_nothing(env: Environment) -> None:
    org_id = new_org(env)
    later = scheduled_rule(env, org_id, due=NOW + timedelta(seconds=1))
    scheduled_rule(env, org_id, due=NOW - HOUR, active=False)

    assert emit(env) == []

    assert scheduled_events(env) == []
    assert next_fire_at(env, later) == NOW + timedelta(seconds=1)
    assert len(emit(env, NOW + timedelta(seconds=1))) == 1  # due at exactly its time


def test_each_type_emits_a_payload_its_model_describes(env: Environment) -> None:
    org_id = new_org(env)
    for name in FIGURES:
        scheduled_rule(env, org_id, name, due=NOW - timedelta(seconds=5))

    emitted = emit(env)

    assert sorted(event_type for _, event_type in emitted) == sorted(FIGURES)
    for event in scheduled_events(env):
        payload_of(event)


def test_consecutive_windows_meet_without_gap_or_overlap(env: Environment) -> None:
    org_id = new_org(env)
    due = NOW - timedelta(seconds=20)
    rule_id = scheduled_rule(env, org_id, due=due)
    emit(env)
    emit(env, NOW + HOUR)

    first, second = (payload_of(event) for event in scheduled_events(env))

    assert (first["window_start"], first["window_end"]) == (at(due - HOUR), at(due))
    assert (second["window_start"], second["window_end"]) == (at(due), at(due + HOUR))
    assert next_fire_at(env, rule_id) == due + 2 * HOUR


def test_missed_ticks_make_one_event_and_the_schedule_goes_on_from_now(env: Environment) -> None:
    org_id = new_org(env)
    stale = NOW - 10 * HOUR  # beat was down for ten ticks
    rule_id = scheduled_rule(env, org_id, due=stale)

    emitted = emit(env)

    [event] = scheduled_events(env)
    assert len(emitted) == 1
    assert event.external_id == scheduled_key(rule_id, stale.isoformat())
    assert next_fire_at(env, rule_id) == NOW + HOUR
    assert emit(env, NOW + timedelta(minutes=59)) == []
    # the next window starts where the last one ended: nothing in between goes unreported
    emit(env, NOW + HOUR)
    assert payload_of(scheduled_events(env)[1])["window_start"] == at(stale)


def test_a_cron_rule_is_due_at_its_cron_times_and_skips_missed_ones(env: Environment) -> None:
    org_id = new_org(env)
    due = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    rule_id = scheduled_rule(env, org_id, due=due, schedule_cron="0 9 * * *")

    emit(env)
    [event] = scheduled_events(env)
    payload = payload_of(event)
    assert (payload["window_start"], payload["window_end"]) == (at(due - 24 * HOUR), at(due))
    assert next_fire_at(env, rule_id) == due + 24 * HOUR

    late = due + 24 * HOUR * 3 + timedelta(hours=5)  # three 09:00s missed
    emit(env, late)
    assert len(scheduled_events(env)) == 2
    assert next_fire_at(env, rule_id) == datetime(2026, 11, 6, 9, 0, tzinfo=UTC)


def test_a_rule_whose_stored_schedule_cannot_be_read_stops_without_holding_up_others(
    env: Environment,
) -> None:
    org_id = new_org(env)
    broken = scheduled_rule(env, org_id, due=NOW - HOUR)
    fine = scheduled_rule(env, org_id, due=NOW - HOUR)
    with transaction(env.engine) as session:  # written around the API
        session.exec(
            sa.update(NotificationRule)
            .where(col(NotificationRule.id) == broken)
            .values(schedule_every_seconds=None, schedule_cron="every tuesday")
        )

    emitted = emit(env)

    [event] = scheduled_events(env)
    assert emitted == [(event.id, "schedule.dead_letters")]
    assert event.external_id == scheduled_key(fine, (NOW - HOUR).isoformat())
    assert next_fire_at(env, broken) is None


@pytest.mark.parametrize("contenders", [2, 8])
def test_concurrent_checks_emit_one_due_time_once(env: Environment, contenders: int) -> None:
    org_id = new_org(env)
    rule_id = scheduled_rule(env, org_id, due=NOW - timedelta(seconds=1))
    start = threading.Barrier(contenders)
    results: list[list[tuple[str, str]]] = []
    errors: list[BaseException] = []

    def check() -> None:
        try:
            with transaction(env.engine) as session:
                start.wait(timeout=10)
                results.append(emit_due(session, NOW, limit=10))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(len(result) for result in results) == [0] * (contenders - 1) + [1]
    assert len(scheduled_events(env)) == 1
    assert next_fire_at(env, rule_id) == NOW - timedelta(seconds=1) + HOUR


def test_a_check_that_holds_a_rule_makes_another_pass_it_by(env: Environment) -> None:
    org_id = new_org(env)
    scheduled_rule(env, org_id, due=NOW - timedelta(seconds=1))
    with transaction(env.engine) as first:
        assert len(emit_due(first, NOW, limit=10)) == 1
        # a second check while the first has not committed: the rule is skipped, not awaited
        outcome: list[list[tuple[str, str]]] = []
        second = threading.Thread(target=lambda: outcome.append(emit(env)))
        second.start()
        second.join(timeout=10)
        assert not second.is_alive(), "the second check waited for the first one's lock"
        assert outcome == [[]]
    assert emit(env) == []
    assert len(scheduled_events(env)) == 1


# --- matching --------------------------------------------------------------------------------


def test_a_scheduled_event_fires_only_the_rule_it_was_made_for(env: Environment) -> None:
    org_id = new_org(env)
    with transaction(env.engine) as session:
        dead_event(session, org_id, NOW - HOUR)
    mine = scheduled_rule(env, org_id, due=NOW - timedelta(seconds=1), calculation="count > 0")
    quiet = scheduled_rule(env, org_id, due=NOW - timedelta(seconds=1), calculation="count > 5")
    other = scheduled_rule(env, org_id, due=NOW + HOUR)  # same type, always fires, not due

    assert len(emit(env)) == 2
    with transaction(env.engine) as session:
        for event in scheduled_events(env):
            match_event(session, inbound(event))

    with Session(env.engine) as session:
        firings = session.exec(select(NotificationFiring)).all()
    by_rule = {firing.rule_id: firing for firing in firings}
    events = {event.id: event for event in scheduled_events(env)}
    assert set(by_rule) == {mine, quiet}  # each due rule judged its own event; `other` none
    assert by_rule[mine].fired is True
    assert by_rule[quiet].fired is False
    for rule_id, firing in by_rule.items():
        assert events[firing.event_id].external_id == scheduled_key(
            rule_id, (NOW - timedelta(seconds=1)).isoformat()
        )
    assert other not in by_rule
