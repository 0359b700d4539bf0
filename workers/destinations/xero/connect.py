"""Connecting a Xero credential (OAuth 2.0, https://developer.xero.com/documentation/guides/oauth2/auth-flow):

- ``authorization_code``: a person consents on Xero's page (``xero_consent``); the code is
  exchanged for a 30-minute access token and a refresh token (``offline_access``), and
  the organisation is the tenant of ``GET /connections`` (the credential's ``tenant_id``
  when it names one, else the connection made last). Refresh tokens rotate: each refresh
  answers a new one, which ``workers.connections.access`` stores before it is used.
- ``client_credentials`` (a Custom Connection): a token from the client id and secret,
  fetched again when it expires; no refresh token, and no tenant header is needed.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx

from domain.connections.tokens import TokenSet
from domain.destinations.spec import CredentialFields
from domain.destinations.xero import XeroCredential, XeroGrant
from domain.errors import TransientError
from domain.settings import Settings
from workers.connections.oauth2 import (
    AuthorizationCodeApp,
    ClientCredentialsApp,
    TokenEndpoint,
    TokenRefused,
)


def xero_app(
    settings: Settings, fields: CredentialFields
) -> AuthorizationCodeApp | ClientCredentialsApp:
    """The credential's app: how it connects and how its tokens are renewed."""
    assert isinstance(fields, XeroCredential), type(fields)
    endpoint = TokenEndpoint(
        settings.xero_token_url,
        fields.client_id,
        fields.client_secret.get_secret_value(),
        settings.http_timeout_seconds,
    )
    if fields.oauth_grant == XeroGrant.CLIENT_CREDENTIALS:
        # a Custom Connection has no refresh token to ask for
        scopes = tuple(s for s in fields.scopes if s != "offline_access")
        return ClientCredentialsApp(endpoint, scopes)
    return AuthorizationCodeApp(
        settings.xero_authorize_url,
        endpoint,
        tuple(fields.scopes),
        tenant_from_tokens=partial(_tenant, settings, fields.tenant_id),
    )


def xero_consent(settings: Settings, fields: CredentialFields) -> AuthorizationCodeApp:
    """``CONSENTS``' entry: called for ``authorization_code`` credentials only."""
    app = xero_app(settings, fields)
    assert isinstance(app, AuthorizationCodeApp), "a Custom Connection has no consent"
    return app


def _tenant(settings: Settings, wanted: str | None, tokens: TokenSet) -> str:
    """The credential's ``tenant_id`` if the consent reached it, else the organisation
    connected last."""
    connections = _connections(settings, tokens.access_token)
    if wanted is not None:
        if any(c.get("tenantId") == wanted for c in connections):
            return wanted
        raise TokenRefused(f"the consent did not give access to Xero tenant {wanted}")
    if not connections:
        raise TokenRefused("the consent gave access to no Xero organisation")
    newest = max(connections, key=lambda c: str(c.get("updatedDateUtc") or ""))
    return str(newest["tenantId"])


def _connections(settings: Settings, access_token: str) -> list[dict[str, Any]]:
    url = f"{settings.xero_api_base.rstrip('/')}/connections"
    try:
        response = httpx.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=settings.http_timeout_seconds,
        )
    except httpx.HTTPError as exc:
        raise TransientError(f"Xero's /connections did not answer: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise TransientError(f"Xero's /connections answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise TransientError("Xero's /connections answered 200 with no JSON") from None
    return (
        [c for c in body if isinstance(c, dict) and c.get("tenantId")]
        if isinstance(body, list)
        else []
    )
