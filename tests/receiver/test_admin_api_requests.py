"""How the admin API reads requests: a JSON body needs its content type, and a replay of
an event that is no longer dead succeeds with nothing replayed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import new_event_id
from domain.events import Event, EventStatus
from domain.organisations import create_organisation
from receiver.app import create_app
from tests.support.environment import Environment

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ACCOUNT = json.dumps({"code": "cus_123", "name": "Initech"}).encode()


@pytest.fixture
def client(env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


@pytest.fixture
def org(env: Environment) -> tuple[str, dict[str, str]]:
    """An organisation's id and the headers that authenticate as it."""
    with transaction(env.engine) as session:
        organisation, key = create_organisation(session, "Acme Billing")
    return organisation.id, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [(None, "without a content-type header"), ("text/plain", "as 'text/plain'")],
)
def test_a_json_body_without_a_json_content_type_is_told_to_send_one(
    client: TestClient,
    org: tuple[str, dict[str, str]],
    content_type: str | None,
    sent_as: str,
) -> None:
    # given a JSON body sent as curl -d sends it when no header is given
    _, headers = org
    if content_type:
        headers = {**headers, "content-type": content_type}

    # when
    response = client.post("/api/v1/accounts", content=ACCOUNT, headers=headers)

    # then the answer names the header to send, and what was sent
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert "content-type: application/json" in body["message"]
    assert sent_as in body["message"]


def test_the_same_body_with_a_json_content_type_is_accepted(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    headers = {**headers, "content-type": "application/json"}
    response = client.post("/api/v1/accounts", content=ACCOUNT, headers=headers)
    assert response.status_code == 201, response.text


def test_a_json_body_that_is_invalid_still_names_the_field(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    response = client.post("/api/v1/accounts", json={"code": "cus_1"}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("body.name:")


def test_replaying_an_event_that_is_no_longer_dead_succeeds_with_nothing_replayed(
    client: TestClient, env: Environment, org: tuple[str, dict[str, str]]
) -> None:
    # given a processed event
    org_id, headers = org
    event_id = new_event_id()
    with transaction(env.engine) as session:
        session.add(
            Event(
                id=event_id,
                org_id=org_id,
                provider="generic",
                type="demo.ping",
                received_at=utcnow(),
                payload="{}",
                status=EventStatus.PROCESSED,
            )
        )

    # when it is replayed by id
    response = client.post(
        "/api/v1/dead-letters/replay", json={"event_ids": [event_id]}, headers=headers
    )

    # then, as the CLI does, the request succeeds and nothing is replayed
    assert response.status_code == 200, response.text
    assert response.json() == {"dry_run": False, "matched": 0, "replayed": []}


def test_every_readme_curl_that_posts_json_sends_its_content_type() -> None:
    # given the commands of the README's Bills out walkthrough (indented lines continue one)
    section = README.split("## Bills out:", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.+?)\n```", section, flags=re.DOTALL)
    assert block is not None
    commands = re.split(r"\n(?=\S)", block.group(1))
    api_function = next(c for c in commands if c.startswith("api() {"))
    posting_json = [c for c in commands if c.startswith(("curl", "api ")) and " -d " in c]

    # then each one that posts JSON says so, itself or through the api function
    assert posting_json
    assert "-H 'content-type: application/json'" in api_function
    for command in posting_json:
        if command.startswith("curl"):
            assert "-H 'content-type: application/json'" in command, command
