"""Hostile input to the admin API answers a 4xx that names the field, never a 5xx: NUL and
lone surrogates are refused at the edge, dates are dates, conflicts are 409, and the
OpenAPI document lists every status a route answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from domain.clock import utcnow
from domain.db import transaction
from domain.eventlog import new_event_id
from domain.events import Event, EventStatus
from domain.organisations import create_organisation
from receiver.app import create_app
from tests.support.environment import Environment

NUL = "\x00"
LINE = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49", "subtotal": "49"}
PERIOD = {"period_start": "2026-10-01", "period_end": "2026-11-01", "currency": "USD"}


@pytest.fixture(scope="module")
def client(shared_env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(shared_env.settings)) as test_client:
        yield test_client


@pytest.fixture
def org(shared_env: Environment) -> tuple[str, dict[str, str]]:
    """A fresh organisation's id and the headers that authenticate as it."""
    with transaction(shared_env.engine) as session:
        organisation, key = create_organisation(session, "Hostile")
    return organisation.id, {"Authorization": f"Bearer {key}"}


def _refused(response: Any, field: str, reason: str) -> None:
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["code"] == "validation_error"
    assert answer["errors"][0]["field"] == field, answer
    assert reason in answer["errors"][0]["reason"]
    assert answer["message"].startswith(f"{field}: ")


def _admin_operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    spec = client.get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in methods.items()
    ]


def _is_text(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "string" and "format" not in option for option in options)


def test_nul_in_any_path_id_or_text_query_parameter_is_422_naming_it(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    tried = 0
    for method, path, operation in _admin_operations(client):
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            name, where = parameter["name"], parameter["in"]
            if where == "path":
                url = path
                for other in parameters:
                    if other["in"] == "path":
                        value = f"x{NUL}y" if other["name"] == name else "x"
                        url = url.replace("{" + other["name"] + "}", quote(value))
                query: dict[str, str] = {}
            elif where == "query" and _is_text(parameter["schema"]):
                url = path.replace("{", "").replace("}", "")
                query = {name: f"a{NUL}b"}
            else:
                continue
            body = {} if "requestBody" in operation else None
            response = client.request(method, url, params=query, json=body, headers=headers)
            _refused(response, f"{where}.{name}", "NUL")
            tried += 1
    assert tried > 20


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/accounts", {"code": f"a{NUL}", "name": "x"}, "body.code"),
        (
            "POST",
            "/api/v1/accounts",
            {"code": "a", "name": "x", "address": {"city": NUL}},
            "body.address.city",
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"code": "a", "name": "x", "custom_fields": {"k": f"v{NUL}"}},
            "body.custom_fields.k",
        ),
        ("POST", "/api/v1/users", {"name": NUL, "email": "a@example.com"}, "body.name"),
        ("POST", "/api/v1/sources", {"name": "s", "secret": NUL}, "body.secret"),
        ("PATCH", "/api/v1/sources/src_nope", {"name": f"s{NUL}"}, "body.name"),
        (
            "POST",
            "/api/v1/credentials",
            {"name": "c", "site": "acme", "api_key": f"k{NUL}"},
            "body.api_key",
        ),
        (
            "POST",
            "/api/v1/bills",
            {"account_id": "a", **PERIOD, "line_items": [{**LINE, "description": NUL}]},
            "body.line_items.0.description",
        ),
        ("POST", "/api/v1/dead-letters/replay", {"error_contains": NUL}, "body.error_contains"),
        ("POST", "/api/v1/dead-letters/replay", {"event_ids": ["e", NUL]}, "body.event_ids.1"),
        (
            "POST",
            "/api/v1/integrations",
            {"name": "x", "entity_config": {"account_filter": NUL}},
            "body.entity_config.account_filter",
        ),
        (
            "POST",
            "/api/v1/external-mappings",
            {
                "entity": "account",
                "entity_id": NUL,
                "external_system": "chargebee",
                "external_table": "customer",
                "external_id": "cus_1",
            },
            "body.entity_id",
        ),
    ],
)
def test_nul_in_a_body_field_is_422_naming_it(
    client: TestClient,
    org: tuple[str, dict[str, str]],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    _, headers = org
    _refused(client.request(method, path, json=body, headers=headers), field, "NUL")


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/api/v1/accounts", '{"code": "\\ud800", "name": "x"}', "body.code"),
        ("/api/v1/users", '{"name": "a\\udfffb", "email": "a@example.com"}', "body.name"),
        (
            "/api/v1/accounts",
            '{"code": "a", "name": "x", "custom_fields": {"\\ud800": 1}}',
            "body.custom_fields",
        ),
    ],
)
def test_a_lone_surrogate_in_a_body_field_is_422_naming_it(
    client: TestClient, org: tuple[str, dict[str, str]], path: str, raw: str, field: str
) -> None:
    _, headers = org
    headers = {**headers, "content-type": "application/json"}
    response = client.post(path, content=raw.encode(), headers=headers)
    _refused(response, field, "surrogate")


def test_a_stored_event_whose_payload_holds_a_lone_surrogate_reads_back_escaped(
    client: TestClient, shared_env: Environment, org: tuple[str, dict[str, str]]
) -> None:
    # given an event stored as sent, its payload holding a lone surrogate and a NUL
    org_id, headers = org
    event_id = new_event_id()
    raw = '{"name": "a\\ud800b", "nul": "\\u0000", "ok": "é"}'
    with transaction(shared_env.engine) as session:
        session.add(
            Event(
                id=event_id,
                org_id=org_id,
                provider="generic",
                type="demo.ping",
                received_at=utcnow(),
                payload=raw,
                status=EventStatus.PROCESSED,
            )
        )

    # when it is read back
    response = client.get(f"/api/v1/events/{event_id}", headers=headers)

    # then the answer is 200 and its payload is the same JSON, the surrogate escaped
    assert response.status_code == 200, response.text
    assert b'"a\\ud800b"' in response.content
    assert json.loads(response.content)["payload"] == json.loads(raw)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/account-plans?active_at=0", "query.active_at"),
        ("/api/v1/account-plans?active_at=0.5", "query.active_at"),
        ("/api/v1/account-plans?active_at=2026-10-01T00:00:00", "query.active_at"),
        ("/api/v1/dead-letters?until=0.5", "query.until"),
        ("/api/v1/dead-letters?since=0", "query.since"),
        ("/api/v1/integration-runs?since=1700000000", "query.since"),
        ("/api/v1/integration-runs?until=0.5", "query.until"),
    ],
)
def test_a_number_is_not_a_date_in_a_query(
    client: TestClient, org: tuple[str, dict[str, str]], path: str, field: str
) -> None:
    _, headers = org
    _refused(client.get(path, headers=headers), field, "YYYY-MM-DD")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/bills",
            {"account_id": "a", **PERIOD, "period_start": 0, "line_items": [LINE]},
            "body.period_start",
        ),
        (
            "/api/v1/bills",
            {"account_id": "a", **PERIOD, "period_end": "0", "line_items": [LINE]},
            "body.period_end",
        ),
        ("/api/v1/dead-letters/replay", {"since": 0.5}, "body.since"),
    ],
)
def test_a_number_is_not_a_date_in_a_body(
    client: TestClient, org: tuple[str, dict[str, str]], path: str, body: Any, field: str
) -> None:
    _, headers = org
    _refused(client.post(path, json=body, headers=headers), field, "YYYY-MM-DD")


def test_dates_and_times_as_documented_are_still_read(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    for path in (
        "/api/v1/account-plans?active_at=2026-10-01",
        "/api/v1/dead-letters?since=2026-10-01T00:00:00Z&until=2026-10-02T12:30:00%2B02:00",
        "/api/v1/integration-runs?since=2026-10-01",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)


def test_a_duplicate_account_code_or_user_email_is_409(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    for path, first, again in (
        ("/api/v1/accounts", {"code": "A1", "name": "x"}, {"code": "A1", "name": "y"}),
        (
            "/api/v1/users",
            {"name": "Ada", "email": "ada@example.com"},
            {"name": "Ada", "email": "ADA@example.com"},
        ),
    ):
        assert client.post(path, json=first, headers=headers).status_code == 201
        response = client.post(path, json=again, headers=headers)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "conflict"
        assert "already exists" in response.json()["message"]


def test_a_duplicate_external_mapping_is_409(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    account = client.post(
        "/api/v1/accounts", json={"code": "A2", "name": "x"}, headers=headers
    ).json()
    mapping = {
        "entity": "account",
        "entity_id": account["id"],
        "external_system": "chargebee",
        "external_table": "customer",
        "external_id": "cus_2",
    }
    first = client.post("/api/v1/external-mappings", json=mapping, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/external-mappings", json=mapping, headers=headers)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "conflict"


def test_a_period_that_ends_before_it_starts_is_422_naming_period_end(
    client: TestClient, org: tuple[str, dict[str, str]]
) -> None:
    _, headers = org
    account = client.post(
        "/api/v1/accounts", json={"code": "A1", "name": "x"}, headers=headers
    ).json()
    body = {"account_id": account["id"], **PERIOD, "period_end": "2026-10-01", "line_items": []}
    _refused(client.post("/api/v1/bills", json=body, headers=headers), "body.period_end", "after")


ERROR_STATUSES_EVERYWHERE = {"401", "422"}


def test_every_admin_route_documents_its_error_answers_with_the_error_schema(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    error_schema = spec["components"]["schemas"]["Error"]
    assert set(error_schema["required"]) == {"code", "message"}
    for method, path, operation in _admin_operations(client):
        responses = operation["responses"]
        documented = set(responses)
        assert documented >= ERROR_STATUSES_EVERYWHERE, (method, path, documented)
        if "{" in path:
            assert "404" in documented, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                content = response["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    conflicts = {
        ("POST", "/api/v1/accounts"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/bills"),
        ("POST", "/api/v1/external-mappings"),
        ("DELETE", "/api/v1/credentials/{credential_id}"),
        ("DELETE", "/api/v1/integrations/{config_id}"),
    }
    for method, path in conflicts:
        assert "409" in spec["paths"][path][method.lower()]["responses"], (method, path)
    assert "404" in spec["paths"]["/api/v1/bills"]["post"]["responses"]
    assert "404" in spec["paths"]["/api/v1/external-mappings"]["post"]["responses"]
    # a body that is not text (e.g. not UTF-8) is FastAPI's 400, on every route with a body
    assert "400" in spec["paths"]["/api/v1/dead-letters/replay"]["post"]["responses"]
    assert "400" not in spec["paths"]["/api/v1/accounts"]["get"]["responses"]
