"""Connecting a QuickBooks Online credential (OAuth 2.0 authorization code,
https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0).

A person consents on Intuit's page (``quickbooks_app``) and picks a company there; the
redirect back carries ``code``, ``state`` and ``realmId``, the company the tokens open.
That realm is the credential's tenant: every API path names it (``/v3/company/{realmId}``),
so a callback without one, or with one that is not a realm id, is refused before the code is
spent. The code becomes an access token (1 hour) and a refresh token (100 days, rolling).
Refresh tokens rotate: a refresh may answer a new one, which ``workers.connections.access``
stores before it is used (Intuit: "always store the latest one returned").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from domain.destinations.quickbooks import QuickBooksCredential
from domain.destinations.spec import CredentialFields
from domain.errors import InvalidInput
from domain.settings import Settings
from workers.connections.oauth2 import AuthorizationCodeApp, TokenEndpoint

#: A realm id is a number (e.g. 9341455130000001); it goes into every URL path, so nothing
#: else is accepted.
REALM_ID = re.compile(r"[0-9]{1,32}")


def quickbooks_app(settings: Settings, fields: CredentialFields) -> AuthorizationCodeApp:
    """The credential's app: its consent, and the refresh of its tokens."""
    assert isinstance(fields, QuickBooksCredential), type(fields)
    endpoint = TokenEndpoint(
        settings.quickbooks_token_url,
        fields.client_id,
        fields.client_secret.get_secret_value(),
        settings.http_timeout_seconds,
    )
    return AuthorizationCodeApp(
        settings.quickbooks_authorize_url,
        endpoint,
        tuple(fields.scopes),
        tenant_from_callback=_realm,
    )


def _realm(params: Mapping[str, str]) -> str:
    realm = params.get("realmId", "")
    if not REALM_ID.fullmatch(realm):
        raise InvalidInput(
            "the callback has no QuickBooks company (realmId): connect again and pick "
            "a company on Intuit's page",
            field="query.realmId",
        )
    return realm
