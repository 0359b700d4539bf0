"""Changing what was set: new credential fields start the connection again (no tenant, no
consent link of the old fields stays), and a rule's change to null is a 422 naming the
field, never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from domain.clock import utcnow
from domain.connections.tokens import TokenSet
from receiver.app import create_app
from tests.receiver.test_admin_api import Org
from tests.support.environment import Environment
from workers.connections import consent as consent_module
from workers.connections.connector import Connected

CREDENTIALS = "/api/v1/credentials"
RULES = "/api/v1/notification-rules"
HOOKS = "/api/v1/webhook-destinations"
PUBLIC_URL = "https://1.1.1.1/hooks/meterbridge"


@pytest.fixture
def orgs(env: Environment) -> Iterator[tuple[Org, Org]]:
    # a server error is an answer here, not an exception in the test
    with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
        yield Org(client, env), Org(client, env)


@dataclass
class _FakeXeroConsent:
    """Xero's consent without Xero: the code ``c`` reaches the tenant ``tenant-c``."""

    client_id: str
    scopes: tuple[str, ...] = ("accounting.invoices",)

    def consent_page(self) -> str:
        return "https://login.xero.example/authorize"

    def exchange(self, code: str, redirect_uri: str, params: Any) -> Connected:
        tokens = TokenSet(f"access-{code}", utcnow() + timedelta(hours=1), f"refresh-{code}")
        return Connected(tokens, f"tenant-{code}")


@pytest.fixture
def fake_xero(monkeypatch: pytest.MonkeyPatch) -> None:
    consents = dict(consent_module.CONSENTS)
    consents["xero"] = lambda _settings, fields: _FakeXeroConsent(fields.client_id)  # type: ignore[attr-defined]
    monkeypatch.setattr(consent_module, "CONSENTS", consents)


def test_new_credential_fields_forget_the_tenant_an_earlier_consent_reached(
    orgs: tuple[Org, Org], fake_xero: None
) -> None:
    """A Xero credential re-keyed from a consented Web app (tenant A) to a Custom Connection
    (client credentials, perhaps for another organisation) must not still claim tenant A:
    its runs would send ``xero-tenant-id: A`` and key their ledger ``xero:A``."""
    org, _ = orgs
    path = f"{CREDENTIALS}/{org.make(CREDENTIALS, _xero('web-app'))['id']}"
    link = org.call("GET", f"{path}/authorize", status=200).json()
    state = parse_qs(urlsplit(link["authorization_url"]).query)["state"][0]
    callback = org.client.get("/oauth/xero/callback", params={"code": "a", "state": state})
    assert callback.status_code == 200, callback.text
    assert org.call("GET", path, status=200).json()["tenant_id"] == "tenant-a"

    rekeyed = org.call(
        "PATCH",
        path,
        {"oauth_grant": "client_credentials", "client_id": "custom-conn", "client_secret": "s2"},
        status=200,
    ).json()
    assert rekeyed["status"] == "connected"
    # new fields start the connection again: nothing learnt from the old app's consent stays
    assert rekeyed["tenant_id"] is None


@pytest.mark.parametrize("field", ["user_ids", "name", "active", "always_fire", "description"])
def test_a_rule_change_to_null_is_refused_by_name_not_a_server_error(
    orgs: tuple[Org, Org], field: str
) -> None:
    """An explicit null for a field a rule cannot be without is refused by name, and the
    rule is left as it was (it had been a TypeError or a NOT NULL violation: a 500)."""
    org, _ = orgs
    hook = org.make(HOOKS, {"url": PUBLIC_URL})
    rule = org.make(
        RULES,
        {
            "code": "c",
            "name": "n",
            "event_name": "bill.approved",
            "always_fire": True,
            "webhook_destination_ids": [hook["id"]],
        },
    )
    answer = org.call("PATCH", f"{RULES}/{rule['id']}", {field: None})
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["errors"][0]["field"]
    assert org.call("GET", f"{RULES}/{rule['id']}", status=200).json() == rule


def test_a_consent_link_given_before_new_fields_cannot_connect_them(
    orgs: tuple[Org, Org], fake_xero: None
) -> None:
    org, _ = orgs
    path = f"{CREDENTIALS}/{org.make(CREDENTIALS, _xero('web-app'))['id']}"
    link = org.call("GET", f"{path}/authorize", status=200).json()
    state = parse_qs(urlsplit(link["authorization_url"]).query)["state"][0]
    org.call("PATCH", path, {"client_secret": "rotated"}, status=200)

    callback = org.client.get("/oauth/xero/callback", params={"code": "a", "state": state})
    assert callback.status_code == 400, callback.text
    after = org.call("GET", path, status=200).json()
    assert (after["status"], after["tenant_id"]) == ("awaiting_authorization", None)


def _xero(client_id: str) -> dict[str, Any]:
    return {"name": "x", "destination": "xero", "client_id": client_id, "client_secret": "s1"}
