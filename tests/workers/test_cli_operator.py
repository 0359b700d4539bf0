"""The CLI as an operator uses it on the whole installation: objects found by id in any
organisation, output printed as stored, tables whole when piped, replays that say what
they did."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlmodel import Session

from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import new_event_id
from domain.events import Event, EventStatus
from domain.integrations.configs import IntegrationConfig
from domain.organisations import DEFAULT_ORG_ID, create_organisation
from domain.secrets import secret_box
from domain.sources import create_source
from tests.support.environment import Environment
from tests.workers.conftest import Cli
from workers.cli.main import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@dataclass
class OtherOrg:
    """Objects of an organisation made with `orgs create`, not the default one."""

    id: str
    source_id: str
    config_id: str
    dead_event_id: str


def add_event(session: Session, org_id: str, source_id: str | None, **fields: Any) -> str:
    event = Event(
        id=new_event_id(),
        org_id=org_id,
        source_id=source_id,
        provider="generic",
        type="demo.ping",
        received_at=utcnow(),
        payload=json.dumps({"type": "demo.ping"}),
        **fields,
    )
    session.add(event)
    session.flush()
    return event.id


def dead(**fields: Any) -> dict[str, Any]:
    return {"status": EventStatus.DEAD, "dead_at": utcnow(), "dead_reason": "exhausted", **fields}


@pytest.fixture
def other_org(env: Environment) -> OtherOrg:
    with transaction(env.engine) as session:
        org, _ = create_organisation(session, "Acme Billing")
        source, _ = create_source(
            session, secret_box(env.settings), org_id=org.id, name="acme", provider="generic"
        )
        config = IntegrationConfig(org_id=org.id, name="Acme Chargebee", destination="chargebee")
        session.add(config)
        session.flush()
        event_id = add_event(session, org.id, source.id, **dead())
    return OtherOrg(org.id, source.id, config.id, event_id)


def stored(env: Environment, model: Any, object_id: str) -> Any:
    with Session(env.engine) as session:
        return session.get(model, object_id)


# Ids are unique across organisations: the CLI finds any object by its id.


@pytest.mark.parametrize(
    "command",
    [
        ("integrations", "show", "{config_id}"),
        ("integrations", "disable", "{config_id}"),
        ("integrations", "enable", "{config_id}"),
        ("sources", "show", "{source_id}"),
        ("sources", "disable", "{source_id}"),
        ("sources", "enable", "{source_id}"),
        ("events", "show", "{dead_event_id}"),
    ],
    ids=" ".join,
)
def test_commands_find_an_object_of_another_organisation_by_id(
    cli: Cli, other_org: OtherOrg, enqueued: list[tuple[str, str]], command: tuple[str, ...]
) -> None:
    # given an object of an organisation made with `orgs create`
    argv = [part.format(**vars(other_org)) for part in command]

    # when a command names it by id alone
    result = cli(*argv)

    # then it is found
    assert result.exit_code == 0, result.output
    assert argv[-1] in result.output


def test_integrations_disable_acts_on_the_config_of_another_organisation(
    cli: Cli, env: Environment, other_org: OtherOrg
) -> None:
    # when
    result = cli("integrations", "disable", other_org.config_id, "--reason", "maintenance")

    # then
    assert result.exit_code == 0, result.output
    config = stored(env, IntegrationConfig, other_org.config_id)
    assert (config.enabled, config.disabled_reason) == (False, "maintenance")


def test_an_org_given_with_an_id_must_be_the_objects(cli: Cli, other_org: OtherOrg) -> None:
    result = cli("integrations", "show", other_org.config_id, "--org", DEFAULT_ORG_ID)
    assert result.exit_code == 1
    assert "no integration config" in result.output


def test_dead_letters_replay_finds_a_dead_event_of_another_organisation(
    cli: Cli, env: Environment, other_org: OtherOrg, enqueued: list[tuple[str, str]]
) -> None:
    # when
    result = cli("dead-letters", "replay", other_org.dead_event_id)

    # then
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1" in result.output
    assert stored(env, Event, other_org.dead_event_id).status == EventStatus.PENDING
    assert enqueued == [(other_org.dead_event_id, "demo.ping")]


# A replay of an event that is no longer dead does nothing, successfully (as the README
# and the HTTP API say).


def test_dead_letters_replay_of_an_event_not_dead_says_so_and_succeeds(
    cli: Cli, env: Environment, enqueued: list[tuple[str, str]]
) -> None:
    # given a processed event
    with transaction(env.engine) as session:
        event_id = add_event(session, DEFAULT_ORG_ID, None, status=EventStatus.PROCESSED)

    # when it is replayed
    result = cli("dead-letters", "replay", event_id)

    # then nothing happens, and the operator is told why
    assert result.exit_code == 0, result.output
    assert f"{event_id} is not dead (status: processed)" in result.output
    assert stored(env, Event, event_id).status == EventStatus.PROCESSED
    assert enqueued == []


def test_dead_letters_replay_of_an_unknown_id_fails(cli: Cli) -> None:
    result = cli("dead-letters", "replay", "evt_nosuchevent")
    assert result.exit_code == 1
    assert "no event 'evt_nosuchevent'" in result.output


# Output is printed as stored.


def test_events_show_prints_a_redacted_header_as_stored(cli: Cli, env: Environment) -> None:
    # given an event whose signature header was redacted when it was stored
    headers = {"webhook-id": "msg_1", "webhook-signature": "[redacted]"}
    with transaction(env.engine) as session:
        event_id = add_event(session, DEFAULT_ORG_ID, None, headers=headers, last_error="[x] y")

    # when
    result = cli("events", "show", event_id)

    # then the brackets are there, not eaten as rich markup
    assert result.exit_code == 0, result.output
    assert '"webhook-signature": "[redacted]"' in result.output
    assert "[x] y" in result.output


def test_tables_are_not_folded_when_piped(cli: Cli, env: Environment) -> None:
    # given a source whose name is wider than a terminal
    name = "a-source-name-wider-than-eighty-columns-" * 4
    with transaction(env.engine) as session:
        create_source(
            session, secret_box(env.settings), org_id=DEFAULT_ORG_ID, name=name, provider="generic"
        )

    # when the list is piped (the test runner's stdout is not a terminal)
    result = cli("sources", "list")

    # then each row is on one line, whole
    assert result.exit_code == 0, result.output
    assert name in result.output


def test_a_table_cell_is_printed_as_stored(cli: Cli, env: Environment) -> None:
    with transaction(env.engine) as session:
        add_event(session, DEFAULT_ORG_ID, None, **dead(last_error="[bold]KeyError[/bold]: 'x'"))

    result = cli("dead-letters", "list")

    assert result.exit_code == 0, result.output
    assert "[bold]KeyError[/bold]: 'x'" in result.output


# The README documents how to choose the organisation a list shows.


@pytest.mark.parametrize(
    "command",
    [
        ["integrations", "list"],
        ["sources", "list"],
        ["events", "list"],
        ["dead-letters", "list"],
        ["users", "list"],
    ],
)
def test_a_list_names_its_organisation_and_where_else_to_look(
    cli: Cli, other_org: OtherOrg, command: list[str]
) -> None:
    # given objects in an organisation made with `orgs create`
    # when a list runs on the default organisation, then it says so, and names the other
    shown = cli(*command)
    assert shown.exit_code == 0, shown.output
    assert f"in {DEFAULT_ORG_ID}" in shown.stdout
    assert f"other organisations: {other_org.id} (Acme Billing)" in shown.stderr
    assert other_org.id not in shown.stdout
    # with --org, it lists that one's objects and names the default organisation instead
    theirs = cli(*command, "--org", other_org.id)
    assert f"in {other_org.id}" in theirs.stdout
    assert f"other organisations: {DEFAULT_ORG_ID}" in theirs.stderr


def test_every_org_scoped_list_command_documents_its_org_option() -> None:
    # given the list commands that take --org
    root = typer.main.get_command(app)
    scoped = [
        name
        for name, group in root.commands.items()  # type: ignore[attr-defined]
        if "list" in getattr(group, "commands", {})
        and any("--org" in param.opts for param in group.commands["list"].params)
    ]
    reference = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"`([^`]*)`", reference)

    # then the CLI reference shows --org on each
    assert scoped, "no org-scoped list command found"
    for name in scoped:
        assert any(f"{name} list" in c and "[--org]" in c for c in commands), f"{name} list"
