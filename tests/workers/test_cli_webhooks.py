"""``meterbridge webhook-destinations`` on the test database: the same services as the
admin API behind each command, a destination found by its id in any organisation, the
command the disabled-destination email gives working as written, and a replay that names
nothing refused."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import Session, col, select

from domain.clock import utcnow
from domain.db import transaction
from domain.events import Event
from domain.failures import disable
from domain.notifications.emails import Email, notify_disabled
from domain.organisations import DEFAULT_ORG_ID, create_organisation
from domain.processing import inbound
from domain.secrets import secret_box
from domain.users import create_user
from domain.webhooks.destinations import WebhookDestination, create_destination
from domain.webhooks.messages import (
    WEBHOOK_DELIVER,
    AttemptRecord,
    AttemptResult,
    MessageStatus,
    WebhookMessage,
    add_message,
    hold,
    mark_failed,
    record_attempt,
)
from tests.support.environment import Environment
from tests.workers.conftest import Cli

HOOKS = "webhook-destinations"


def make_destination(
    env: Environment, org_id: str = DEFAULT_ORG_ID, url: str = "https://1.1.1.1/hook", **fields: Any
) -> str:
    with transaction(env.engine) as session:
        created = create_destination(
            session,
            secret_box(env.settings),
            org_id,
            url=url,
            description=fields.pop("description", ""),
            user_ids=fields.pop("user_ids", []),
            check_url=lambda _url: None,
        )
        return created.destination.id


def make_message(
    env: Environment,
    destination_id: str,
    status: MessageStatus,
    *,
    event_type: str = "bill.approved",
    answers: tuple[tuple[int, bytes], ...] = (),
) -> str:
    """A message of the destination that went through ``answers`` (status, body) and
    ended ``status``."""
    with transaction(env.engine) as session:
        destination = session.get(WebhookDestination, destination_id)
        assert destination is not None
        message, _ = add_message(session, destination, event_type=event_type, body="{}")
        for code, body in answers:
            result = AttemptResult.SUCCEEDED if code < 300 else AttemptResult.FAILED
            error = None if code < 300 else f"answered {code}"
            record = AttemptRecord(
                result, status_code=code, duration_seconds=0.012, answer=body, error=error
            )
            record_attempt(session, message, record, utcnow())
        if status == MessageStatus.FAILED:
            mark_failed(session, message, utcnow())
        elif status == MessageStatus.HELD:
            hold(session, message)
        return message.id


def stored(env: Environment, model: Any, object_id: str) -> Any:
    with Session(env.engine) as session:
        return session.get(model, object_id)


def statuses(env: Environment, destination_id: str) -> dict[str, str]:
    with Session(env.engine) as session:
        found = session.exec(
            select(WebhookMessage).where(col(WebhookMessage.destination_id) == destination_id)
        )
        return {message.id: message.status for message in found}


def disabled_with_held(env: Environment, held: int, **fields: Any) -> tuple[str, list[str]]:
    """A destination disabled as by its tenth failure, with ``held`` messages held."""
    destination_id = make_destination(env, **fields)
    with transaction(env.engine) as session:
        disable(
            session, WebhookDestination, destination_id, reason="10 failures in a row", now=utcnow()
        )
    return destination_id, [
        make_message(env, destination_id, MessageStatus.HELD) for _ in range(held)
    ]


@dataclass
class OtherOrg:
    id: str
    destination_id: str


@pytest.fixture
def other_org(env: Environment) -> OtherOrg:
    with transaction(env.engine) as session:
        org, _ = create_organisation(session, "Acme Billing")
    return OtherOrg(org.id, make_destination(env, org.id, url="https://8.8.8.8/acme"))


# list


def test_list_shows_each_destination_of_the_organisation_with_its_state(
    cli: Cli, env: Environment, other_org: OtherOrg
) -> None:
    # given an enabled destination and a disabled one in the default organisation
    enabled = make_destination(env, url="https://1.1.1.1/a-url-wider-than-a-terminal-" + "x" * 80)
    disabled, _ = disabled_with_held(env, 0)

    # when
    result = cli(HOOKS, "list")

    # then each is on one whole line with its state; the other organisation is named
    assert result.exit_code == 0, result.output
    assert f"webhook destinations in {DEFAULT_ORG_ID}" in result.stdout
    [enabled_row] = [line for line in result.stdout.splitlines() if enabled in line]
    assert "x" * 80 in enabled_row
    assert "True" in enabled_row
    [disabled_row] = [line for line in result.stdout.splitlines() if disabled in line]
    assert "False" in disabled_row
    assert "10 failures in a row" in disabled_row
    assert other_org.destination_id not in result.stdout
    assert f"other organisations: {other_org.id} (Acme Billing)" in result.stderr


def test_list_with_org_shows_that_organisations_destinations(
    cli: Cli, env: Environment, other_org: OtherOrg
) -> None:
    ours = make_destination(env)
    result = cli(HOOKS, "list", "--org", other_org.id)
    assert result.exit_code == 0, result.output
    assert other_org.destination_id in result.stdout
    assert ours not in result.stdout


def test_list_as_json_never_shows_a_secret(cli: Cli, env: Environment) -> None:
    destination_id = make_destination(env)
    result = cli(HOOKS, "list", "--json")
    assert result.exit_code == 0, result.output
    assert destination_id in result.stdout
    assert "secret_ciphertext" not in result.stdout


# enable


def test_enable_releases_the_held_messages_and_says_how_many(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    # given a disabled destination holding two messages, and a failed one
    destination_id, held = disabled_with_held(env, 2)
    failed = make_message(env, destination_id, MessageStatus.FAILED, answers=((500, b""),))

    # when
    result = cli(HOOKS, "enable", destination_id)

    # then it is enabled with its count started again, and the held messages are sent
    assert result.exit_code == 0, result.output
    assert f"{destination_id} enabled; 2 held messages released" in result.output
    destination = stored(env, WebhookDestination, destination_id)
    assert (destination.enabled, destination.consecutive_errors) == (True, 0)
    assert destination.disabled_reason is None
    assert statuses(env, destination_id) == {
        held[0]: MessageStatus.PENDING,
        held[1]: MessageStatus.PENDING,
        failed: MessageStatus.FAILED,
    }
    assert [event_type for _, event_type in enqueued] == [WEBHOOK_DELIVER] * 2
    for event_id, _ in enqueued:
        assert json.loads(stored(env, Event, event_id).payload)["message_id"] in held


def test_the_command_the_disabled_email_gives_works_as_written(
    cli: Cli, env: Environment, other_org: OtherOrg, enqueued: list[tuple[str, str]]
) -> None:
    # given a destination of another organisation, disabled, whose user was emailed
    with transaction(env.engine) as session:
        user = create_user(session, other_org.id, name="Ops", email="ops@example.com")
    destination_id = make_destination(env, other_org.id, user_ids=[user.id])
    with transaction(env.engine) as session:
        disable(session, WebhookDestination, destination_id, reason="410 Gone", now=utcnow())
        [notice] = session.exec(
            select(Event).where(col(Event.type) == "webhook_destination.disabled")
        ).all()
        notify_disabled(session, inbound(notice))
        [email] = session.exec(select(Email)).all()
    found = re.search(
        r"meterbridge (webhook-destinations enable [^\s`]+ --org [^\s`]+)", email.text_body
    )
    assert found, email.text_body

    # when the command is run exactly as the email gives it
    result = cli(*shlex.split(found.group(1)))

    # then the destination is enabled
    assert result.exit_code == 0, result.output
    assert f"{destination_id} enabled; 0 held messages released" in result.output
    assert stored(env, WebhookDestination, destination_id).enabled is True


def test_enable_finds_a_destination_of_another_organisation_by_id_alone(
    cli: Cli, env: Environment, other_org: OtherOrg, enqueued: list[tuple[str, str]]
) -> None:
    result = cli(HOOKS, "enable", other_org.destination_id)
    assert result.exit_code == 0, result.output
    assert f"{other_org.destination_id} enabled" in result.output


def test_an_org_given_with_an_id_must_be_the_destinations(
    cli: Cli, env: Environment, other_org: OtherOrg, enqueued: list[tuple[str, str]]
) -> None:
    destination_id, _ = disabled_with_held(env, 1)
    result = cli(HOOKS, "enable", destination_id, "--org", other_org.id)
    assert result.exit_code == 1
    assert f"no webhook destination '{destination_id}' in {other_org.id}" in result.output
    assert stored(env, WebhookDestination, destination_id).enabled is False
    assert enqueued == []


def test_an_unknown_destination_fails(cli: Cli) -> None:
    result = cli(HOOKS, "attempts", "whd_nosuchdestination")
    assert result.exit_code == 1
    assert "no webhook destination 'whd_nosuchdestination'" in result.output


# attempts


def test_attempts_lists_every_attempt_newest_first(cli: Cli, env: Environment) -> None:
    # given a message that failed once then succeeded, and another that failed
    destination_id = make_destination(env)
    delivered = make_message(
        env,
        destination_id,
        MessageStatus.SUCCEEDED,
        answers=((500, b"[db] down\nstack trace"), (200, b"ok")),
    )
    failed = make_message(env, destination_id, MessageStatus.FAILED, answers=((503, b""),))

    # when
    result = cli(HOOKS, "attempts", destination_id)

    # then
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "msg_" in line]
    assert [(failed in r, delivered in r) for r in rows] == [
        (True, False),
        (False, True),
        (False, True),
    ]
    assert "answered 503" in rows[0]
    assert re.search(r"succeeded .*200 .* ok", rows[1]), rows[1]
    assert re.search(r"failed .*500 .*12\.0 .*answered 500", rows[2]), rows[2]


def test_attempts_of_one_message_and_a_limit(cli: Cli, env: Environment) -> None:
    destination_id = make_destination(env)
    one = make_message(env, destination_id, MessageStatus.FAILED, answers=((500, b""),) * 3)
    other = make_message(env, destination_id, MessageStatus.FAILED, answers=((500, b""),))

    only = cli(HOOKS, "attempts", destination_id, "--message", one)
    assert only.exit_code == 0, only.output
    assert only.stdout.count(one) == 3
    assert other not in only.stdout

    latest = cli(HOOKS, "attempts", destination_id, "--limit", "1", "--json")
    assert latest.exit_code == 0, latest.output
    assert latest.stdout.count('"message_id"') == 1
    assert other in latest.stdout


# replay


def test_replay_sends_the_named_failed_message_again_and_only_it(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    destination_id = make_destination(env)
    first, second = (
        make_message(env, destination_id, MessageStatus.FAILED, answers=((500, b""),))
        for _ in range(2)
    )

    result = cli(HOOKS, "replay", destination_id, "--message", first)

    assert result.exit_code == 0, result.output
    assert "replayed 1 failed messages" in result.output
    assert statuses(env, destination_id) == {
        first: MessageStatus.PENDING,
        second: MessageStatus.FAILED,
    }
    [(event_id, event_type)] = enqueued
    assert event_type == WEBHOOK_DELIVER
    assert json.loads(stored(env, Event, event_id).payload) == {"message_id": first}


def test_replay_dry_run_lists_what_all_would_send_and_changes_nothing(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    # given two failed messages, one delivered and one held
    destination_id = make_destination(env)
    failed = [
        make_message(env, destination_id, MessageStatus.FAILED, answers=((500, b""),))
        for _ in range(2)
    ]
    make_message(env, destination_id, MessageStatus.SUCCEEDED, answers=((200, b""),))
    make_message(env, destination_id, MessageStatus.HELD)
    before = statuses(env, destination_id)

    # when
    dry = cli(HOOKS, "replay", destination_id, "--all", "--dry-run")

    # then the failed ones are listed, and nothing moved
    assert dry.exit_code == 0, dry.output
    assert "would replay 2 failed messages" in dry.stdout
    assert all(message_id in dry.stdout for message_id in failed)
    assert "answered 500" in dry.stdout
    assert statuses(env, destination_id) == before
    assert enqueued == []

    # and --all sends exactly those
    done = cli(HOOKS, "replay", destination_id, "--all")
    assert done.exit_code == 0, done.output
    assert "replayed 2 failed messages" in done.output
    assert sorted(m for m, s in statuses(env, destination_id).items() if s == "pending") == failed


def test_replay_by_event_type(cli: Cli, env: Environment, enqueued: list[tuple[str, str]]) -> None:
    destination_id = make_destination(env)
    approved = make_message(env, destination_id, MessageStatus.FAILED, event_type="bill.approved")
    make_message(env, destination_id, MessageStatus.FAILED, event_type="bill.generated")

    result = cli(HOOKS, "replay", destination_id, "--event-type", "bill.approved")

    assert result.exit_code == 0, result.output
    assert [m for m, s in statuses(env, destination_id).items() if s == "pending"] == [approved]


def test_replay_with_no_message_filter_or_all_is_refused(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    destination_id = make_destination(env)
    failed = make_message(env, destination_id, MessageStatus.FAILED)

    result = cli(HOOKS, "replay", destination_id)

    assert result.exit_code == 2
    assert "name a message with --message, or a filter, or pass --all" in result.stderr
    assert statuses(env, destination_id) == {failed: MessageStatus.FAILED}
    assert enqueued == []


def test_replay_that_matches_no_failed_message_fails(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    destination_id = make_destination(env)
    delivered = make_message(env, destination_id, MessageStatus.SUCCEEDED, answers=((200, b""),))

    result = cli(HOOKS, "replay", destination_id, "--message", delivered)

    assert result.exit_code == 1
    assert "no failed messages match" in result.output
    assert statuses(env, destination_id) == {delivered: MessageStatus.SUCCEEDED}
