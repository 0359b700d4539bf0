"""The fake OAuth 2.0 authorization server the Xero and QuickBooks fakes mount: consent,
code exchange, client authentication, rotating refresh tokens with a grace period,
revocation, client credentials and its fault injection, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fake_oauth import FakeAuthorizationServer
from tests.support.processes import free_port, serve_in_thread, stop_server

CLIENT, SECRET = "client-1", "secret-1"
REDIRECT = "https://app.example/callback"

Serve = Callable[..., tuple[FakeAuthorizationServer, httpx.Client]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts a host app mounting a fresh authorization server (``/authorize``, ``/token``)
    and a ``/me`` resource that answers the grant of a bearer token, or 401."""
    servers: list[Any] = []
    clients: list[httpx.Client] = []

    def start(**knobs: Any) -> tuple[FakeAuthorizationServer, httpx.Client]:
        auth = FakeAuthorizationServer(**knobs)
        auth.register_client(CLIENT, SECRET, scope="accounting.transactions")

        async def me(request: Request) -> JSONResponse:
            grant = auth.check_bearer(request)
            if grant is None:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            return JSONResponse({"client_id": grant.client_id, "scope": grant.scope})

        app = Starlette(
            routes=[
                *auth.routes(authorize_path="/authorize", token_path="/token"),
                Route("/me", me),
            ]
        )
        port = free_port()
        servers.append(serve_in_thread(app, port))
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        clients.append(http)
        return auth, http

    yield start
    for http in clients:
        http.close()
    for server in servers:
        stop_server(server)


def consent(http: httpx.Client, scope: str = "openid offline_access", **extra: str) -> str:
    answer = http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": "xyz",
            **extra,
        },
    )
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == "xyz"
    return query["code"]


def token(http: httpx.Client, *, basic: bool = True, **form: str) -> httpx.Response:
    if basic:
        return http.post("/token", data=form, auth=(CLIENT, SECRET))
    return http.post("/token", data=form)


def exchange(http: httpx.Client, code: str) -> dict[str, Any]:
    answer = token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return token(http, grant_type="refresh_token", refresh_token=refresh_token)


def me(http: httpx.Client, access_token: str) -> httpx.Response:
    return http.get("/me", headers={"Authorization": f"Bearer {access_token}"})


def test_a_consent_gives_a_code_that_gives_tokens(serve: Serve) -> None:
    auth, http = serve(
        callback_params=lambda: {"realmId": "9130"},
        extra_token_fields=lambda: {"x_refresh_token_expires_in": 8726400},
    )
    answer = http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT,
            "redirect_uri": REDIRECT,
            "scope": "accounting.transactions offline_access",
            "state": "s1",
        },
    )
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["realmId"] == ["9130"]
    assert query["state"] == ["s1"]
    body = exchange(http, query["code"][0])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"] == "accounting.transactions offline_access"
    assert body["x_refresh_token_expires_in"] == 8726400
    assert body["access_token"] != body["refresh_token"]
    assert me(http, body["access_token"]).json() == {
        "client_id": CLIENT,
        "scope": "accounting.transactions offline_access",
    }
    assert auth.grants[0].params == {"realmId": "9130"}
    assert me(http, "not-a-token").status_code == 401
    assert http.get("/me").status_code == 401


def test_a_code_is_single_use_and_reuse_revokes_what_it_gave(serve: Serve) -> None:
    auth, http = serve()
    code = consent(http)
    tokens = exchange(http, code)
    again = token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert me(http, tokens["access_token"]).status_code == 401
    assert refresh(http, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert auth.invalid_grants == 2


def test_a_code_needs_the_consents_redirect_uri_and_expires(serve: Serve) -> None:
    _auth, http = serve(code_seconds=0.2)
    wrong = token(
        http, grant_type="authorization_code", code=consent(http), redirect_uri=REDIRECT + "x"
    )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    code = consent(http)
    time.sleep(0.3)
    late = token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")


def test_clients_authenticate_by_basic_or_by_form(serve: Serve) -> None:
    auth, http = serve()
    by_form = token(
        http,
        basic=False,
        grant_type="authorization_code",
        code=consent(http),
        redirect_uri=REDIRECT,
        client_id=CLIENT,
        client_secret=SECRET,
    )
    assert by_form.status_code == 200
    bad_basic = http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": by_form.json()["refresh_token"]},
        auth=(CLIENT, "wrong"),
    )
    assert bad_basic.status_code == 401
    assert bad_basic.json()["error"] == "invalid_client"
    assert bad_basic.headers["www-authenticate"] == "Basic"
    bad_form = http.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert (bad_form.status_code, bad_form.json()["error"]) == (400, "invalid_client")
    assert [r.outcome for r in auth.token_requests] == ["ok", "invalid_client", "invalid_client"]
    unknown = http.get(
        "/authorize",
        params={"response_type": "code", "client_id": "nobody", "redirect_uri": REDIRECT},
    )
    assert unknown.status_code == 400
    assert "location" not in unknown.headers


def test_refresh_tokens_rotate_with_a_grace_period(serve: Serve) -> None:
    auth, http = serve(refresh_grace_seconds=0.4)
    first = exchange(http, consent(http))
    second = refresh(http, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert second.json()["access_token"] != first["access_token"]
    lost_answer = refresh(http, first["refresh_token"])  # within the grace: works again
    assert lost_answer.status_code == 200
    assert [r.reuse for r in auth.token_requests] == [False, False, True]
    time.sleep(0.5)
    stale = refresh(http, first["refresh_token"])
    assert stale.status_code == 400
    assert stale.json()["error"] == "invalid_grant"
    assert refresh(http, second.json()["refresh_token"]).status_code == 200
    assert auth.refreshes == 3
    assert auth.invalid_grants == 1


def test_unused_refresh_tokens_expire(serve: Serve) -> None:
    _auth, http = serve(refresh_token_seconds=0.2)
    tokens = exchange(http, consent(http))
    time.sleep(0.3)
    assert refresh(http, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke_ends_every_refresh_token(serve: Serve) -> None:
    auth, http = serve()
    one, two = exchange(http, consent(http)), exchange(http, consent(http))
    auth.revoke()
    for tokens in (one, two):
        answer = refresh(http, tokens["refresh_token"])
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert me(http, one["access_token"]).status_code == 200  # access tokens run out alone
    auth.revoke(access_tokens=True)
    assert me(http, one["access_token"]).status_code == 401
    fresh = exchange(http, consent(http))  # a new consent works
    assert refresh(http, fresh["refresh_token"]).status_code == 200


def test_access_tokens_expire(serve: Serve) -> None:
    auth, http = serve(access_token_seconds=0.3)
    tokens = exchange(http, consent(http))
    assert me(http, tokens["access_token"]).status_code == 200
    time.sleep(0.4)
    assert me(http, tokens["access_token"]).status_code == 401
    renewed = refresh(http, tokens["refresh_token"]).json()
    assert me(http, renewed["access_token"]).status_code == 200
    auth.expire_access_tokens()
    assert me(http, renewed["access_token"]).status_code == 401


def test_client_credentials_give_no_refresh_token(serve: Serve) -> None:
    _auth, http = serve()
    answer = token(http, grant_type="client_credentials")
    assert answer.status_code == 200
    body = answer.json()
    assert "refresh_token" not in body
    assert body["scope"] == "accounting.transactions"
    assert me(http, body["access_token"]).status_code == 200


def test_a_refresh_token_can_require_a_scope(serve: Serve) -> None:
    _auth, http = serve(refresh_requires_scope="offline_access")
    assert "refresh_token" not in exchange(http, consent(http, scope="openid"))
    assert "refresh_token" in exchange(http, consent(http, scope="openid offline_access"))


def test_a_denied_consent_redirects_with_access_denied(serve: Serve) -> None:
    auth, http = serve()
    auth.deny_next_consent()
    answer = http.get(
        "/authorize",
        params={"response_type": "code", "client_id": CLIENT, "redirect_uri": REDIRECT},
    )
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["location"]).query) == {"error": ["access_denied"]}
    consent(http)  # only the next one


def test_token_faults(serve: Serve) -> None:
    auth, http = serve(hang_seconds=0.5)
    tokens = exchange(http, consent(http))
    auth.fail_next_token(1, "500")
    auth.fail_next_token(1, "hang")
    failed = refresh(http, tokens["refresh_token"])
    assert (failed.status_code, failed.json()["error"]) == (500, "server_error")
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(CLIENT, SECRET),
            timeout=0.2,
        )
    assert refresh(http, tokens["refresh_token"]).status_code == 200  # nothing was used
    assert [r.fault for r in auth.token_requests] == [None, "500", "hang", None]
    assert auth.token_requests[-1].reuse is False
    assert auth.token_requests[0].at <= auth.token_requests[1].at


def test_unsupported_and_incomplete_requests(serve: Serve) -> None:
    _auth, http = serve()
    assert token(http, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert token(http, grant_type="refresh_token").json()["error"] == "invalid_request"
    assert token(http).json()["error"] == "invalid_request"
