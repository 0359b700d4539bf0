"""Destinations as plug-ins, seen from the admin API: listed with their schemas, and each
integration's options and credential checked by its own destination's models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from domain.db import transaction
from domain.destinations.registry import DESTINATIONS
from domain.integrations.credentials import Credential, open_credential
from domain.ratelimits import Limit
from domain.secrets import secret_box
from receiver.app import create_app
from tests.receiver.test_admin_api import Org
from tests.support.environment import Environment
from workers.destinations.registry import PERFORMERS


@pytest.fixture
def orgs(env: Environment) -> Iterator[tuple[Org, Org]]:
    with TestClient(create_app(env.settings)) as client:
        yield Org(client, env), Org(client, env)


def test_every_destination_has_a_performer_and_every_performer_a_destination() -> None:
    assert set(DESTINATIONS) == set(PERFORMERS)


def test_every_declared_limit_is_a_rate_the_limiter_reads() -> None:
    for spec in DESTINATIONS.values():
        for limit in spec.limits.values():
            Limit.parse(limit)


def test_destinations_are_listed_with_the_json_schemas_of_their_options_and_credential(
    orgs: tuple[Org, Org],
) -> None:
    org, _ = orgs
    listed = {d["name"]: d for d in org.call("GET", "/api/v1/destinations", status=200).json()}
    assert set(listed) == set(DESTINATIONS)
    assert all(
        d["sends_before_approval"] == DESTINATIONS[n].sends_before_approval
        for n, d in listed.items()
    )
    chargebee = listed["chargebee"]
    assert chargebee["title"] == "Chargebee"
    assert chargebee["config_schema"]["additionalProperties"] is False
    assert "create_invoice" in chargebee["config_schema"]["properties"]
    assert "price_id_mapping" in chargebee["config_schema"]["properties"]
    assert set(chargebee["credential_schema"]["required"]) == {"api_key", "site"}


def test_a_credential_with_a_field_its_destination_does_not_have_is_refused_by_name(
    orgs: tuple[Org, Org],
) -> None:
    org, _ = orgs
    body = {"name": "cb", "site": "acme", "api_key": "k", "region": "eu"}
    answer = org.call("POST", "/api/v1/credentials", body, status=422).json()
    assert answer["errors"][0]["field"] == "body.region"


def test_a_credential_shows_its_public_fields_and_never_its_key(orgs: tuple[Org, Org]) -> None:
    org, _ = orgs
    created = org.make("/api/v1/credentials", {"name": "cb", "site": "acme", "api_key": "sekrit"})
    assert (created["destination"], created["site"], created["options"]) == (
        "chargebee",
        "acme",
        {},
    )
    assert "sekrit" not in str(org.call("GET", f"/api/v1/credentials/{created['id']}").json())


def test_a_destination_named_by_the_product_but_not_built_yet_is_refused_on_the_destination(
    orgs: tuple[Org, Org],
) -> None:
    org, _ = orgs
    answer = org.call(
        "POST", "/api/v1/integrations", {"name": "x", "destination": "webhook"}, status=422
    ).json()
    assert answer["errors"][0]["field"] == "body.destination"
    assert "not available yet" in answer["message"]


def test_a_credential_is_changed_in_place_and_its_new_key_never_shown(
    orgs: tuple[Org, Org], env: Environment
) -> None:
    org, other = orgs
    created = org.make("/api/v1/credentials", {"name": "cb", "site": "acme", "api_key": "old-k"})
    path = f"/api/v1/credentials/{created['id']}"

    changed = org.call("PATCH", path, {"name": "cb2", "api_key": "new-k"}).json()

    assert (changed["name"], changed["site"], changed["status"]) == ("cb2", "acme", "connected")
    assert "new-k" not in str(changed)
    with transaction(env.engine) as session:
        row = session.get(Credential, created["id"])
        assert row is not None
        fields = open_credential(secret_box(env.settings), row)
    assert fields.api_key.get_secret_value() == "new-k"  # type: ignore[attr-defined]
    # a field the destination does not have is refused by name; another org sees nothing
    refused = org.call("PATCH", path, {"region": "eu"}, status=422).json()
    assert refused["errors"][0]["field"].endswith("region")
    other.call("PATCH", path, {"name": "mine"}, status=404)


def test_only_an_oauth_credential_of_ones_own_has_a_consent_link(orgs: tuple[Org, Org]) -> None:
    org, other = orgs
    xero = org.make(
        "/api/v1/credentials",
        {"name": "x", "destination": "xero", "client_id": "c", "client_secret": "s"},
    )
    assert (xero["status"], xero["connected_at"]) == ("awaiting_authorization", None)
    link = org.call("GET", f"/api/v1/credentials/{xero['id']}/authorize").json()
    assert "state=" in link["authorization_url"]
    assert link["redirect_uri"].endswith("/oauth/xero/callback")
    other.call("GET", f"/api/v1/credentials/{xero['id']}/authorize", status=404)
    chargebee = org.make("/api/v1/credentials", {"name": "cb", "site": "a", "api_key": "k"})
    org.call("GET", f"/api/v1/credentials/{chargebee['id']}/authorize", status=409)


def test_a_callback_with_a_made_up_state_connects_nothing(orgs: tuple[Org, Org]) -> None:
    org, _ = orgs
    answer = org.client.get("/oauth/xero/callback", params={"code": "c", "state": "forged"})
    assert answer.status_code == 400
    assert "unknown, already used or expired" in answer.text
