"""The admin API in-process: keys, organisation scoping, validation, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from domain.db import transaction
from domain.integrations.credentials import Credential
from domain.organisations import create_organisation, list_api_keys, revoke_api_key
from receiver.app import create_app
from tests.support.environment import Environment

LINE = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49", "subtotal": "49"}
PERIOD = {"period_start": "2026-10-01", "period_end": "2026-11-01", "currency": "USD"}


class Org:
    def __init__(self, client: TestClient, env: Environment) -> None:
        with transaction(env.engine) as session:
            org, self.key = create_organisation(session, "org")
        self.id = org.id
        self.client = client
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def call(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        response = self.client.request(method, path, json=body, headers=self.headers)
        if status is not None:
            assert response.status_code == status, response.text
        return response

    def make(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body, status=201).json()


@pytest.fixture
def client(env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


@pytest.fixture
def orgs(client: TestClient, env: Environment) -> tuple[Org, Org]:
    return Org(client, env), Org(client, env)


def populate(org: Org) -> dict[str, dict[str, Any]]:
    account = org.make("/api/v1/accounts", {"code": "A1", "name": "Acme"})
    user = org.make("/api/v1/users", {"name": "Ada", "email": "ada@example.com"})
    credential = org.make(
        "/api/v1/credentials", {"name": "cb", "site": "acme", "api_key": "live_s3cret"}
    )
    config = org.make(
        "/api/v1/integrations",
        {
            "name": "cb",
            "credential_id": credential["id"],
            "account_ids": [account["id"]],
            "disabled_notification_user_ids": [user["id"]],
        },
    )
    mapping = org.make(
        "/api/v1/external-mappings",
        {
            "entity": "account",
            "entity_id": account["id"],
            "external_system": "chargebee",
            "external_table": "customer",
            "external_id": "cus_1",
        },
    )
    bill = org.make("/api/v1/bills", {"account_id": account["id"], **PERIOD, "line_items": [LINE]})
    return {
        "accounts": account,
        "users": user,
        "credentials": credential,
        "integrations": config,
        "external-mappings": mapping,
        "bills": bill,
    }


def test_keys_are_required_and_revocable(client: TestClient, env: Environment) -> None:
    assert client.get("/api/v1/accounts").status_code == 401
    bad = client.get("/api/v1/accounts", headers={"Authorization": "Bearer mbk_nope"})
    assert (bad.status_code, bad.json()["code"]) == (401, "unauthenticated")
    org = Org(client, env)
    org.call("GET", "/api/v1/accounts", status=200)
    with transaction(env.engine) as session:
        [key] = list_api_keys(session, org.id)
        revoke_api_key(session, org.id, key.id)
    org.call("GET", "/api/v1/accounts", status=401)


def test_another_organisations_objects_are_404_and_never_listed(orgs: tuple[Org, Org]) -> None:
    owner, other = orgs
    objects = populate(owner)
    for collection, obj in objects.items():
        missing = other.call("GET", f"/api/v1/{collection}/{obj['id']}", status=404).json()
        assert missing["code"] == "not_found"
        assert other.call("GET", f"/api/v1/{collection}", status=200).json() == []
    other.call("POST", f"/api/v1/integrations/{objects['integrations']['id']}/disable", status=404)
    other.call("POST", f"/api/v1/bills/{objects['bills']['id']}/approve", status=404)
    other.call("DELETE", f"/api/v1/credentials/{objects['credentials']['id']}", status=404)
    # and nothing of theirs can be named in our objects
    bill = other.call(
        "POST",
        "/api/v1/bills",
        {"account_id": objects["accounts"]["id"], **PERIOD, "line_items": [LINE]},
    )
    assert bill.status_code == 404
    config = other.call(
        "POST", "/api/v1/integrations", {"name": "x", "credential_id": objects["credentials"]["id"]}
    )
    assert (config.status_code, config.json()["errors"][0]["field"]) == (422, "body.credential_id")
    mapping = other.call(
        "POST",
        "/api/v1/external-mappings",
        {
            "entity": "product",
            "entity_id": "p",
            "external_system": "chargebee",
            "external_table": "item_price",
            "external_id": "x",
            "integration_config_id": objects["integrations"]["id"],
        },
    )
    assert mapping.status_code == 404
    # a mapping of their account answers exactly as one of an account that does not exist
    answers = [
        other.call(
            "POST",
            "/api/v1/external-mappings",
            {
                "entity": "account",
                "entity_id": account_id,
                "external_system": "chargebee",
                "external_table": "customer",
                "external_id": "cus_theirs",
            },
            status=404,
        ).json()
        for account_id in (objects["accounts"]["id"], "acc_does_not_exist")
    ]
    assert [answer["code"] for answer in answers] == ["not_found", "not_found"]
    assert other.call("GET", "/api/v1/external-mappings", status=200).json() == []


@pytest.mark.parametrize(
    ("path", "body", "field", "reason"),
    [
        ("/api/v1/integrations", {"name": "x", "colour": "red"}, "body.colour", "Extra inputs"),
        (
            "/api/v1/integrations",
            {"name": "x", "entity_config": {"account_filter": "custom_fields.country = = UK"}},
            "body.entity_config.account_filter",
            "at position 24",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "destination": "webhook"},
            "body.destination",
            "not available yet",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "destination": "sap"},
            "body.destination",
            "Input should be",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "destination_config": {"multidecimal_price_places": 11}},
            "body.destination_config.multidecimal_price_places",
            "less than or equal to 10",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "destination_config": {"price_id_mapping": {"TIPS": "p"}}},
            "body.destination_config.price_id_mapping.TIPS.[key]",
            "Input should be",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "account_ids": ["acc_nope"]},
            "body.account_ids",
            "acc_nope",
        ),
        (
            "/api/v1/integrations",
            {"name": "x", "disabled_notification_user_ids": ["usr_nope"]},
            "body.disabled_notification_user_ids",
            "usr_nope",
        ),
        ("/api/v1/integrations", {}, "body.name", "Field required"),
        (
            "/api/v1/accounts",
            {"code": "A", "name": "A", "currency": "usd"},
            "body.currency",
            "pattern",
        ),
        (
            "/api/v1/accounts",
            {"code": "A", "name": "A", "email": "not-an-email"},
            "body.email",
            "email",
        ),
        (
            "/api/v1/credentials",
            {"name": "cb", "site": "Bad Site!", "api_key": "k"},
            None,
            "site must be",
        ),
        (
            "/api/v1/bills",
            {"account_id": "x", **PERIOD, "line_items": [{**LINE, "type": "TIPS"}]},
            "body.line_items.0.type",
            "Input should be",
        ),
        (
            "/api/v1/bills",
            {
                "account_id": "x",
                **PERIOD,
                "line_items": [
                    {
                        "type": "USAGE",
                        "quantity": 3,
                        "subtotal": "3",
                        "bands": [
                            {"lower_limit": 0, "quantity": 3, "unit_price": "1", "subtotal": "2"}
                        ],
                    }
                ],
            },
            "body.line_items.0",
            "add up to the line's subtotal",
        ),
    ],
)
def test_invalid_input_is_422_with_the_field_and_the_reason(
    orgs: tuple[Org, Org], path: str, body: dict, field: str | None, reason: str
) -> None:
    org, _ = orgs
    response = org.call("POST", path, body, status=422)
    answer = response.json()
    assert answer["code"] == "validation_error"
    assert reason in answer["message"]
    if field:
        assert answer["errors"][0]["field"] == field
        assert reason in answer["errors"][0]["reason"]


def test_credentials_are_encrypted_and_never_returned(
    orgs: tuple[Org, Org], env: Environment
) -> None:
    org, _ = orgs
    created = org.make(
        "/api/v1/credentials", {"name": "cb", "site": "acme", "api_key": "live_s3cret"}
    )
    listed = org.call("GET", "/api/v1/credentials", status=200).text
    shown = org.call("GET", f"/api/v1/credentials/{created['id']}", status=200).text
    assert all("live_s3cret" not in text for text in (str(created), listed, shown))
    assert "api_key" not in created
    with Session(env.engine) as session:
        [row] = session.exec(select(Credential).where(Credential.id == created["id"])).all()
    assert "live_s3cret" not in row.secret_ciphertext


def test_a_config_is_connected_once_a_credential_is_attached(orgs: tuple[Org, Org]) -> None:
    org, _ = orgs
    config = org.make("/api/v1/integrations", {"name": "cb"})
    assert (config["connected"], config["destination_config"]["create_invoice"]) == (False, False)
    credential = org.make("/api/v1/credentials", {"name": "cb", "site": "acme", "api_key": "k"})
    attached = org.call(
        "PATCH",
        f"/api/v1/integrations/{config['id']}",
        {"credential_id": credential["id"]},
        status=200,
    ).json()
    assert attached["connected"] is True
    org.call("DELETE", f"/api/v1/credentials/{credential['id']}", status=409)
    detached = org.call(
        "PATCH", f"/api/v1/integrations/{config['id']}", {"credential_id": None}, status=200
    ).json()
    assert detached["connected"] is False
    org.call("DELETE", f"/api/v1/credentials/{credential['id']}", status=204)


def test_bills_regenerate_until_approved(orgs: tuple[Org, Org]) -> None:
    org, _ = orgs
    account = org.make("/api/v1/accounts", {"code": "A1", "name": "Acme"})
    body = {"account_id": account["id"], **PERIOD, "line_items": [LINE]}
    first = org.make("/api/v1/bills", body)
    second = org.make("/api/v1/bills", {**body, "line_items": [LINE, LINE]})
    assert (second["id"], second["version"], len(second["line_items"])) == (first["id"], 2, 2)
    assert second["event_id"] != first["event_id"]
    approved = org.call("POST", f"/api/v1/bills/{first['id']}/approve", status=200).json()
    assert (approved["status"], approved["event_id"] is not None) == ("approved", True)
    again = org.call("POST", f"/api/v1/bills/{first['id']}/approve", status=200).json()
    assert again["event_id"] is None
    refused = org.call("POST", "/api/v1/bills", body, status=409).json()
    assert "approved" in refused["message"]
    events = org.call("GET", "/api/v1/events", status=200).json()
    assert sorted(e["type"] for e in events) == [
        "account.created",
        "bill.approved",
        "bill.generated",
        "bill.generated",
    ]


def test_the_openapi_document_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/integrations" in spec["paths"]
    assert "/webhooks/{source_id}" in spec["paths"]
    assert client.get("/docs").status_code == 200
