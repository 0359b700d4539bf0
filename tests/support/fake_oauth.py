"""A fake OAuth 2.0 authorization server that the other fakes (Xero, QuickBooks) mount in
their own Starlette app: the authorization-code grant with a consent redirect, rotating
refresh tokens with a grace period, client credentials, and fault injection on the token
endpoint.

    auth = FakeAuthorizationServer(access_token_seconds=1800, refresh_grace_seconds=1800)
    auth.register_client("client", "secret")
    app = Starlette(routes=auth.routes(authorize_path="/authorize", token_path="/token"))
    ...
    grant = auth.check_bearer(request)        # in the host fake: None → answer 401
    auth.expire_access_tokens()               # every access token issued so far is expired
    auth.revoke()                             # the user disconnected the app
    auth.deny_next_consent()                  # the next consent: error=access_denied
    auth.fail_next_token(1, "500")            # the next token request answers 500
    auth.fail_next_token(1, "hang")           # ... hangs for ``hang_seconds``, issues nothing
    auth.fail_next_token(1, "apply_then_hang")  # ... issues (rotates), then hangs: answer lost
    auth.token_requests; auth.refreshes; auth.invalid_grants

What it reproduces, because meterbridge depends on it:

- ``GET authorize_path?response_type=code&client_id&redirect_uri&scope&state`` is the
  user's consent: it answers 302 to ``redirect_uri?code=…&state=…`` plus whatever
  ``callback_params()`` gives (QuickBooks adds ``realmId``; the values are kept on the
  :class:`Grant`). An unknown client or a missing ``redirect_uri`` is a 400 page with no
  redirect (RFC 6749 §4.1.2.1: never redirect to an unverified URI); a
  ``response_type`` other than ``code`` redirects with ``error=unsupported_response_type``;
  a denied consent redirects with ``error=access_denied`` (RFC 6749 §4.1.2.1).
- ``POST token_path`` takes a form body (RFC 6749 §3.2) and authenticates the client by
  HTTP Basic ``client_id:client_secret`` or by ``client_id``/``client_secret`` in the form
  (§2.3.1). A bad client answers ``invalid_client``, 401 with ``WWW-Authenticate: Basic``
  when Basic was tried and 400 otherwise (§5.2). Grants:

  - ``authorization_code``: the code is single use, lives ``code_seconds``, belongs to the
    client it was issued to, and ``redirect_uri`` must be the one given at consent (§4.1.3);
    otherwise ``invalid_grant``. A second use of a code also revokes the tokens it gave
    (§4.1.2 "SHOULD revoke").
  - ``refresh_token``: refresh tokens ROTATE. Each refresh answers a new refresh token; the
    one handed in stays usable, as many times as needed, for ``refresh_grace_seconds``
    after its first use, then answers ``invalid_grant``. Xero documents exactly this:
    "Refresh Tokens are valid for 30 days, however they also provide a 30 minute grace
    period where the same token can be used as many times as needed, in case the initial
    response containing your new Refresh and Access tokens is lost" (Xero staff,
    https://community.xero.com/developer/discussion/127920775; also
    https://community.xero.com/developer/discussion/105714701). A reuse within the grace
    answers a fresh pair and is recorded as ``TokenRequest.reuse``; the refresh token the
    first use gave stays valid too (what Xero does to it is UNCONFIRMED). An unused refresh
    token expires ``refresh_token_seconds`` after it was issued (Xero: 60 days; older posts
    say 30). A revoked one (:meth:`revoke`) or one issued to another client is
    ``invalid_grant``. Errors carry ``error_description`` unless ``describe_errors=False``:
    Xero answers exactly ``400 {"error":"invalid_grant"}`` (xero-python 15.2.0
    ``identity/api/exception_handler.py`` compares the body to that string).
  - ``client_credentials`` (Xero Custom Connections, https://developer.xero.com/faq/custom-integration):
    an access token and no refresh token. ``scope`` in the form, else the scopes given to
    :meth:`register_client`.

  Unknown grant types answer ``unsupported_grant_type``; a missing parameter
  ``invalid_request`` (§5.2).
- The answer is ``{"access_token", "token_type": "Bearer", "expires_in", "refresh_token",
  "scope"}`` (§5.1; Xero adds ``id_token`` for OpenID scopes, QuickBooks
  ``x_refresh_token_expires_in``: the host fake gives those as ``extra_token_fields()``),
  with ``Cache-Control: no-store``. ``refresh_token`` is left out when no refresh token is
  issued: client credentials, or a grant without ``offline_access`` when
  ``refresh_requires_scope="offline_access"`` (Xero: "offline_access … required if you need
  a refresh token", https://developer.xero.com/documentation/guides/oauth2/scopes/).
- Access tokens are opaque random strings, valid ``access_token_seconds`` (Xero: 30
  minutes). A refresh does not end the access tokens issued before it; they expire on
  their own (the community post quoted by Nango says Xero invalidates them: UNCONFIRMED
  from a primary source, so the fake is lenient).

Knobs beyond the lifetimes: ``refresh_requires_scope``, ``describe_errors``,
``hang_seconds``; :meth:`register_client` takes the client-credentials default ``scope``;
:meth:`issue` hands out tokens without HTTP; :meth:`inspect_bearer` tells a missing, unknown
and expired token apart; ``revoke(access_tokens=True)`` also ends the access tokens.

Times come from ``time.monotonic()`` so tests can use lifetimes of a fraction of a second.
Everything is under one lock; the token endpoint's ``hang`` sleeps outside it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

FaultKind = Literal["500", "hang", "apply_then_hang"]


@dataclass
class Grant:
    """One authorization: a consent (authorization code) or a client-credentials grant.
    Every access and refresh token descends from one grant."""

    grant_id: str
    client_id: str
    scope: str  # space-separated, as granted
    kind: str  # "authorization_code" | "client_credentials"
    params: dict[str, str] = field(default_factory=dict)  # callback_params() at consent
    at: float = 0.0  # time.monotonic() when granted
    revoked: bool = False

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())


@dataclass(frozen=True)
class Bearer:
    """The state of a request's bearer token (:meth:`FakeAuthorizationServer.inspect_bearer`)."""

    state: str  # "missing" | "unknown" | "expired" | "ok"
    grant: Grant | None = None  # set when "ok"
    expired_ago: float = 0.0  # seconds since it expired, when "expired"


@dataclass
class TokenRequest:
    """One ``POST token_path``."""

    grant_type: str
    at: float  # time.monotonic() when the request arrived
    outcome: str  # "ok" | "invalid_grant" | "invalid_client" | "invalid_request" | ...
    reuse: bool = False  # a refresh token handed in again within its grace period
    client_id: str | None = None
    status: int = 0
    fault: str | None = None  # "500" | "hang" when injected


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    grant: Grant
    expires_at: float
    used: bool = False


@dataclass
class _AccessToken:
    grant: Grant
    expires_at: float


@dataclass
class _RefreshToken:
    grant: Grant
    expires_at: float
    used_at: float | None = None  # first successful use; the grace runs from here
    revoked: bool = False


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class FakeAuthorizationServer:
    def __init__(
        self,
        *,
        access_token_seconds: float = 1800,
        refresh_grace_seconds: float = 1800,
        refresh_token_seconds: float = 60 * 86400,
        code_seconds: float = 300,
        extra_token_fields: Callable[[], dict[str, Any]] | None = None,
        callback_params: Callable[[], dict[str, str]] | None = None,
        refresh_requires_scope: str | None = None,
        describe_errors: bool = True,
        hang_seconds: float = 5.0,
    ) -> None:
        self.access_token_seconds = access_token_seconds
        self.refresh_grace_seconds = refresh_grace_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.code_seconds = code_seconds
        self.extra_token_fields = extra_token_fields
        self.callback_params = callback_params
        self.refresh_requires_scope = refresh_requires_scope
        self.describe_errors = describe_errors
        self.hang_seconds = hang_seconds
        self.token_requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, str]] = {}  # client_id → (secret, default scope)
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._grants: list[Grant] = []
        self._deny = 0
        self._faults: deque[FaultKind] = deque()

    # --- the tests' (and host fakes') side -------------------------------------------

    def register_client(self, client_id: str, client_secret: str, *, scope: str = "") -> None:
        """A client (app) that may authenticate; ``scope`` is what a client-credentials
        grant gets when the request names none."""
        with self._lock:
            self._clients[client_id] = (client_secret, scope)

    def routes(self, *, authorize_path: str, token_path: str) -> list[Route]:
        return [
            Route(authorize_path, self._authorize, methods=["GET"]),
            Route(token_path, self._token, methods=["POST"]),
        ]

    def check_bearer(self, request: Request) -> Grant | None:
        """The grant a valid, unexpired access token in ``Authorization: Bearer`` belongs
        to; None when there is none (the caller answers 401)."""
        return self.inspect_bearer(request).grant

    def inspect_bearer(self, request: Request) -> Bearer:
        """What is wrong with the request's bearer token, if anything: for host fakes whose
        vendor words a 401 differently for a missing, unknown or expired token."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Bearer("missing")
        with self._lock:
            access = self._access.get(token.strip())
            if access is None:
                return Bearer("unknown")
            now = time.monotonic()
            if now >= access.expires_at:
                return Bearer("expired", expired_ago=now - access.expires_at)
            return Bearer("ok", grant=access.grant)

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = time.monotonic()
            for access in self._access.values():
                access.expires_at = min(access.expires_at, now)

    def revoke(self, *, access_tokens: bool = False) -> None:
        """Every refresh token issued so far is invalid (the user disconnected the app);
        with ``access_tokens`` the access tokens issued so far end too."""
        with self._lock:
            for refresh in self._refresh.values():
                refresh.revoked = True
            if access_tokens:
                now = time.monotonic()
                for access in self._access.values():
                    access.expires_at = min(access.expires_at, now)

    def deny_next_consent(self) -> None:
        with self._lock:
            self._deny += 1

    def fail_next_token(self, n: int, kind: FaultKind) -> None:
        """The next ``n`` token requests answer 500 ``server_error`` (nothing issued),
        hang for ``hang_seconds`` and then answer 504 (nothing issued), or
        ``apply_then_hang``: issue the tokens (a refresh token rotates), then hang and
        answer 504, as when the answer is lost or the caller dies waiting for it."""
        if kind not in ("500", "hang", "apply_then_hang"):
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._faults.extend([kind] * n)

    def issue(
        self, client_id: str, *, scope: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Tokens as an authorization-code exchange would give them, without the browser
        round trip (the client must be registered). Not recorded in ``token_requests``."""
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client {client_id!r}")
            grant = self._grant(client_id, scope, "authorization_code", params or {})
            return self._tokens(grant, refreshable=True)

    @property
    def refreshes(self) -> int:
        with self._lock:
            return sum(
                1
                for r in self.token_requests
                if r.grant_type == "refresh_token" and r.outcome == "ok"
            )

    @property
    def invalid_grants(self) -> int:
        with self._lock:
            return sum(1 for r in self.token_requests if r.outcome == "invalid_grant")

    @property
    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants)

    # --- endpoints --------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        query = request.query_params
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        with self._lock:
            if client_id not in self._clients:
                return PlainTextResponse("unknown client_id", status_code=400)
            if not redirect_uri or not urlsplit(redirect_uri).scheme:
                return PlainTextResponse("redirect_uri missing or invalid", status_code=400)
            state = {"state": query["state"]} if "state" in query else {}
            if query.get("response_type") != "code":
                return _redirect(redirect_uri, {"error": "unsupported_response_type", **state})
            if self._deny:
                self._deny -= 1
                return _redirect(redirect_uri, {"error": "access_denied", **state})
            params = dict(self.callback_params()) if self.callback_params else {}
            grant = self._grant(client_id, query.get("scope", ""), "authorization_code", params)
            code = secrets.token_urlsafe(24)
            self._codes[code] = _Code(
                client_id, redirect_uri, grant, time.monotonic() + self.code_seconds
            )
            return _redirect(redirect_uri, {"code": code, **state, **params})

    async def _token(self, request: Request) -> Response:
        arrived = time.monotonic()
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        grant_type = form.get("grant_type", "")
        record = TokenRequest(grant_type=grant_type, at=arrived, outcome="")
        with self._lock:
            self.token_requests.append(record)
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            record.fault = fault
        if fault in ("500", "hang"):
            if fault == "hang":
                await asyncio.sleep(self.hang_seconds)
                return self._finish(record, 504, {"error": "temporarily_unavailable"}, "hang")
            return self._finish(record, 500, {"error": "server_error"}, "server_error")
        basic = request.headers.get("authorization", "")
        with self._lock:
            try:
                client_id = self._client(basic, form)
                record.client_id = client_id
                if grant_type == "authorization_code":
                    body = self._exchange_code(client_id, form)
                elif grant_type == "refresh_token":
                    body = self._refresh_grant(client_id, form, record)
                elif grant_type == "client_credentials":
                    scope = form.get("scope") or self._clients[client_id][1]
                    grant = self._grant(client_id, scope, "client_credentials", {})
                    body = self._tokens(grant, refreshable=False)
                elif not grant_type:
                    raise _OAuthError("invalid_request", "grant_type is required")
                else:
                    raise _OAuthError("unsupported_grant_type", f"{grant_type} is not supported")
            except _OAuthError as exc:
                headers = {"WWW-Authenticate": "Basic"} if exc.status == 401 else {}
                answer = {"error": exc.error}
                if self.describe_errors:
                    answer["error_description"] = exc.description
                return self._finish(record, exc.status, answer, exc.error, headers)
        if fault == "apply_then_hang":  # issued (a refresh token rotated), answer lost
            await asyncio.sleep(self.hang_seconds)
            return self._finish(record, 504, {"error": "temporarily_unavailable"}, "hang")
        return self._finish(record, 200, body, "ok")

    # --- rules (run under the lock) ---------------------------------------------------

    def _client(self, basic: str, form: dict[str, str]) -> str:
        scheme, _, credentials = basic.partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = (
                    base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
            status = 401
        else:
            client_id, secret, status = (
                form.get("client_id", ""),
                form.get("client_secret", ""),
                400,
            )
            if not client_id:
                raise _OAuthError("invalid_client", "no client authentication", 401)
        known = self._clients.get(client_id)
        if known is None or not secrets.compare_digest(known[0], secret):
            raise _OAuthError("invalid_client", "client authentication failed", status)
        return client_id

    def _exchange_code(self, client_id: str, form: dict[str, str]) -> dict[str, Any]:
        if "code" not in form:
            raise _OAuthError("invalid_request", "code is required")
        code = self._codes.get(form["code"])
        if code is None or code.client_id != client_id:
            raise _OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            code.grant.revoked = True
            for refresh in self._refresh.values():
                if refresh.grant is code.grant:
                    refresh.revoked = True
            for access in self._access.values():
                if access.grant is code.grant:
                    access.expires_at = min(access.expires_at, time.monotonic())
            raise _OAuthError("invalid_grant", "authorization code already used")
        code.used = True
        if time.monotonic() >= code.expires_at:
            raise _OAuthError("invalid_grant", "authorization code expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the consent's")
        return self._tokens(code.grant, refreshable=True)

    def _refresh_grant(
        self, client_id: str, form: dict[str, str], record: TokenRequest
    ) -> dict[str, Any]:
        if "refresh_token" not in form:
            raise _OAuthError("invalid_request", "refresh_token is required")
        refresh = self._refresh.get(form["refresh_token"])
        now = time.monotonic()
        if refresh is None or refresh.grant.client_id != client_id:
            raise _OAuthError("invalid_grant", "unknown refresh token")
        if refresh.revoked or refresh.grant.revoked:
            raise _OAuthError("invalid_grant", "refresh token revoked")
        if now >= refresh.expires_at:
            raise _OAuthError("invalid_grant", "refresh token expired")
        if refresh.used_at is not None:
            if now - refresh.used_at >= self.refresh_grace_seconds:
                raise _OAuthError("invalid_grant", "refresh token already used")
            record.reuse = True
        else:
            refresh.used_at = now
        return self._tokens(refresh.grant, refreshable=True)

    def _grant(self, client_id: str, scope: str, kind: str, params: dict[str, str]) -> Grant:
        grant = Grant(
            grant_id=secrets.token_hex(8),
            client_id=client_id,
            scope=" ".join(scope.split()),
            kind=kind,
            params=params,
            at=time.monotonic(),
        )
        self._grants.append(grant)
        return grant

    def _tokens(self, grant: Grant, *, refreshable: bool) -> dict[str, Any]:
        now = time.monotonic()
        access = secrets.token_urlsafe(32)
        self._access[access] = _AccessToken(grant, now + self.access_token_seconds)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(1, round(self.access_token_seconds)),
        }
        wanted = self.refresh_requires_scope
        if refreshable and (wanted is None or wanted in grant.scopes):
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _RefreshToken(grant, now + self.refresh_token_seconds)
            body["refresh_token"] = refresh
        body["scope"] = grant.scope
        if self.extra_token_fields is not None:
            body.update(self.extra_token_fields())
        return body

    def _finish(
        self,
        record: TokenRequest,
        status: int,
        body: dict[str, Any],
        outcome: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        record.status, record.outcome = status, outcome
        return JSONResponse(
            body,
            status_code=status,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
        )


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    parts = urlsplit(uri)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)
