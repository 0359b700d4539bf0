"""GET /api/v1/event-types: the catalogue with its JSON Schemas, behind an API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from domain.catalogue import CATALOGUE
from domain.db import transaction
from domain.organisations import create_organisation
from receiver.app import create_app
from tests.support.environment import Environment


@pytest.fixture
def client(env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


@pytest.fixture
def headers(env: Environment) -> dict[str, str]:
    with transaction(env.engine) as session:
        _, key = create_organisation(session, "org")
    return {"Authorization": f"Bearer {key}"}


def test_lists_every_event_type_with_its_schema(
    client: TestClient, headers: dict[str, str]
) -> None:
    # when
    response = client.get("/api/v1/event-types", headers=headers)

    # then
    assert response.status_code == 200, response.text
    listed = {entry["name"]: entry for entry in response.json()}
    assert sorted(listed) == sorted(CATALOGUE)
    approved = listed["bill.approved"]
    assert (approved["version"], approved["description"]) == (
        1,
        "A bill was approved: it is final.",
    )
    assert approved["schema"] == CATALOGUE["bill.approved"].schema
    money = approved["schema"]["properties"]["total"]["anyOf"][0]
    assert (money["type"], money["format"]) == ("string", "decimal")


def test_one_event_type_and_an_unknown_one(client: TestClient, headers: dict[str, str]) -> None:
    found = client.get("/api/v1/event-types/event.dead", headers=headers)
    missing = client.get("/api/v1/event-types/event.alive", headers=headers)

    assert found.status_code == 200
    assert set(found.json()["schema"]["properties"]) >= {"event_id", "type", "dead_at"}
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/event-types", "/api/v1/event-types/bill.approved"])
@pytest.mark.parametrize("authorization", [None, "Bearer mb_unknown"])
def test_an_api_key_is_required(client: TestClient, path: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get(path, headers=headers)
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
