"""An OAuth 2.0 token endpoint (RFC 6749 §3.2), and what its answers mean to a run.

A refusal of the grant itself (``invalid_grant``: a revoked, expired or reused refresh
token or code; ``invalid_client``, ``unauthorized_client``) will not go away by retrying: it
is ``TokenRefused``, and the credential needs a person to reconnect it. Anything else that
goes wrong (no answer, 429, 5xx) is transient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from domain.connections.tokens import TokenSet, token_set
from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed
from workers.connections.connector import Connected
from workers.destinations.http import retry_after, try_again_later


class TokenRefused(AuthenticationFailed):
    """The destination's token endpoint refused the grant: a person must reconnect."""


@dataclass(frozen=True)
class TokenEndpoint:
    url: str
    client_id: str
    #: Sent by HTTP Basic authentication (Xero, Intuit); None for a grant that
    #: authenticates otherwise (NetSuite's signed JWT).
    client_secret: str | None
    timeout: float

    def authorization_code(self, code: str, redirect_uri: str) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return self._request(form)

    def refresh(self, refresh_token: str) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._request(form, keep_refresh=refresh_token)

    def client_credentials(self, scopes: tuple[str, ...] = ()) -> TokenSet:
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = " ".join(scopes)
        return self._request(form)

    def jwt_assertion(self, assertion: str) -> TokenSet:
        """Client credentials proven by a signed JWT (RFC 7523 §2.2)."""
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        return self._request(form)

    def _request(self, form: dict[str, str], *, keep_refresh: str | None = None) -> TokenSet:
        auth = (self.client_id, self.client_secret) if self.client_secret is not None else None
        host = urlsplit(self.url).netloc
        grant = form["grant_type"]
        try:
            response = httpx.post(
                self.url,
                data=form,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientError(
                f"{host}'s token endpoint did not answer ({grant}): {type(exc).__name__}"
            ) from None
        if response.status_code == 429 or try_again_later(response.status_code):
            raise TransientError(
                f"{host}'s token endpoint answered {response.status_code} ({grant})",
                retry_after=retry_after(response),
            )
        if response.status_code >= 400:
            raise TokenRefused(f"{host} refused the {grant} grant: {_oauth_error(response)}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return token_set(answer if isinstance(answer, dict) else {}, keep_refresh=keep_refresh)


def _oauth_error(response: httpx.Response) -> str:
    """``error: error_description`` from an RFC 6749 §5.2 answer, else the status."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        detail = f": {description}" if isinstance(description, str) and description else ""
        return f"{body['error']}{detail}"[:500]
    return f"HTTP {response.status_code}"


@dataclass(frozen=True)
class AuthorizationCodeApp:
    """A provider's app that connects with OAuth's authorization code (Xero, QuickBooks):
    the ``Consent`` that turns a person's consent into tokens and a tenant, and the
    ``Connector`` that refreshes them (a refresh token is what it renews with)."""

    authorize_url: str
    endpoint: TokenEndpoint
    scopes: tuple[str, ...]
    #: The tenant, read from the callback's query before the code is spent (QuickBooks'
    #: ``realmId``); raises ``InvalidInput`` when it is missing or malformed.
    tenant_from_callback: Callable[[Mapping[str, str]], str] | None = None
    #: The tenant, asked of the provider with the new tokens (Xero's ``/connections``).
    tenant_from_tokens: Callable[[TokenSet], str] | None = None

    def consent_page(self) -> str:
        return self.authorize_url

    @property
    def client_id(self) -> str:
        return self.endpoint.client_id

    def exchange(self, code: str, redirect_uri: str, params: Mapping[str, str]) -> Connected:
        tenant = self.tenant_from_callback(params) if self.tenant_from_callback else None
        tokens = self.endpoint.authorization_code(code, redirect_uri)
        if self.tenant_from_tokens is not None:
            tenant = self.tenant_from_tokens(tokens)
        return Connected(tokens, tenant)

    def renew(self, current: TokenSet | None) -> TokenSet:
        if current is None or current.refresh_token is None:
            raise TokenRefused("the credential has no refresh token: connect it again")
        return self.endpoint.refresh(current.refresh_token)


@dataclass(frozen=True)
class ClientCredentialsApp:
    """An app that gets its tokens with its own secret (Xero Custom Connections): no
    consent, no refresh token; an expired token is replaced by a new one."""

    endpoint: TokenEndpoint
    scopes: tuple[str, ...] = ()

    def renew(self, current: TokenSet | None) -> TokenSet:
        return self.endpoint.client_credentials(self.scopes)
