"""A ``408 Request Timeout`` is a timeout, so it is transient everywhere
(``workers.destinations.http.try_again_later``).

- The token endpoint: a 408 (from the provider or a proxy in front of it) is not a refusal
  of the grant: the credential stays ``connected``, and the run is retried.
- Every destination's API: a 408 is retried, never a permanent error that ends the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from domain.clock import utcnow
from domain.connections.tokens import TokenSet, save_tokens
from domain.db import transaction
from domain.errors import PermanentError, TransientError
from domain.integrations.credentials import Credential, CredentialStatus
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from tests.domain.test_connections import xero_credential
from tests.support.environment import Environment
from tests.support.processes import free_port, serve_in_thread, stop_server
from workers.connections.access import access_token
from workers.connections.http import AuthorizedClient
from workers.connections.oauth2 import AuthorizationCodeApp, TokenEndpoint
from workers.destinations.chargebee import client as chargebee
from workers.destinations.netsuite.client import NetSuiteClient
from workers.destinations.paddle import client as paddle
from workers.destinations.quickbooks.client import QuickBooksClient
from workers.destinations.stripe import client as stripe
from workers.destinations.xero.client import XeroClient


@pytest.fixture
def token_url_answering_408() -> Iterator[str]:
    async def token(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Request Timeout", status_code=408)

    port = free_port()
    server = serve_in_thread(Starlette(routes=[Route("/token", token, methods=["POST"])]), port)
    yield f"http://127.0.0.1:{port}/token"
    stop_server(server)


def test_a_408_from_the_token_endpoint_is_transient(token_url_answering_408: str) -> None:
    endpoint = TokenEndpoint(token_url_answering_408, "client-1", "secret-1", timeout=5)
    with pytest.raises(TransientError) as raised:
        endpoint.refresh("refresh-0")
    assert not isinstance(raised.value, PermanentError)


def test_a_408_from_the_token_endpoint_leaves_the_credential_connected(
    env: Environment, token_url_answering_408: str
) -> None:
    credential_id = xero_credential(env)
    box = secret_box(env.settings)
    with transaction(env.engine) as session:
        expired = TokenSet("access-0", utcnow() - timedelta(seconds=1), "refresh-0")
        save_tokens(session, box, DEFAULT_ORG_ID, credential_id, expired)
        credential = session.get(Credential, credential_id)
        assert credential is not None
        credential.status = CredentialStatus.CONNECTED
        session.add(credential)
    app = AuthorizationCodeApp(
        "https://authorize.example",
        TokenEndpoint(token_url_answering_408, "client-1", "secret-1", timeout=5),
        ("offline_access",),
    )
    with pytest.raises(TransientError):
        access_token(env.engine, box, credential_id, app)
    with transaction(env.engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert credential.status == CredentialStatus.CONNECTED, credential.status_reason


class _Token:
    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        return "Bearer access-0", 0


def _http(status: int) -> AuthorizedClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="<html>Request Timeout</html>")

    return AuthorizedClient(
        "https://api.example",
        _Token(),
        5.0,
        title="destination",
        transport=httpx.MockTransport(answer),
    )


CALLS: dict[str, Callable[[AuthorizedClient], object]] = {
    "xero": lambda http: XeroClient(http).create_invoice({"Type": "ACCREC"}, "key-1"),
    "quickbooks": lambda http: QuickBooksClient(http, "9341").create_invoice({}, "rid-1"),
    "netsuite": lambda http: NetSuiteClient(http).upsert_invoice("bill-1", {}),
}


@pytest.mark.parametrize("destination", sorted(CALLS))
def test_a_408_from_a_destination_api_is_transient(destination: str) -> None:
    with _http(408) as http, pytest.raises(TransientError) as raised:
        CALLS[destination](http)
    assert not isinstance(raised.value, PermanentError)


ERRORS = {"chargebee": chargebee._error, "paddle": paddle._error, "stripe": stripe._error}


@pytest.mark.parametrize("destination", sorted(ERRORS))
def test_a_408_from_an_api_key_destination_is_transient(destination: str) -> None:
    request = httpx.Request("POST", "https://api.example/v1/invoices")
    answer = httpx.Response(408, text="<html>Request Timeout</html>", request=request)
    error = ERRORS[destination]("POST", "/v1/invoices", answer)
    assert isinstance(error, TransientError), type(error).__mro__
    assert not isinstance(error, PermanentError)
