"""NetSuite's two ways in, each an ``Authorizer`` for ``workers.connections.http``:

- ``m2m``, OAuth 2.0 client credentials (ns-help section_162755359851, the JWT's structure
  section_162790605110): ``NetSuiteConnector.renew`` signs a JWT with the certificate's
  private key (header ``kid`` = certificate id, ``typ`` JWT; claims ``iss`` = client id,
  ``scope`` = ``["rest_webservices"]`` as in Oracle's sample request, ``aud`` = the token
  URL, ``iat``, ``exp`` = ``iat`` + 3600, NetSuite's most) and posts it as a
  ``client_assertion``. The access token lasts 60 minutes and comes with no refresh token:
  each renewal signs a new JWT. Tokens are kept like every OAuth destination's
  (``workers.connections.access``: renewed once under the credential's row lock, a 401
  renews the refused one). A refused assertion (a revoked certificate, say) marks the
  credential ``needs_reconnect`` and the run ends ``AUTH_FAILED``.
- ``tba``, Token-Based Authentication (OAuth 1.0a): ``TbaAuthorizer`` signs every request
  with HMAC-SHA256 (oauthlib), ``realm`` the account id as NetSuite writes it
  (``123456_SB1``; a lower-case realm is an invalid login). Its token does not expire, so
  there is nothing to renew: a 401 is signed afresh (a new nonce) once by
  ``AuthorizedClient``, and a second 401 ends the run ``AUTH_FAILED``.
"""

from __future__ import annotations

import time
from typing import Any, cast

import jwt
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_AUTH_HEADER, Client
from sqlalchemy.engine import Engine

from domain.connections.tokens import TokenSet
from domain.destinations.netsuite import NetSuiteAuth, NetSuiteCredential
from domain.destinations.spec import CredentialFields
from domain.secrets import SecretBox
from domain.settings import Settings
from workers.connections.http import Authorizer, BearerAuthorizer
from workers.connections.oauth2 import TokenEndpoint

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"  # noqa: S105 (a path, not a secret)
#: The scope of the access token: REST web services (the record API) and nothing else.
SCOPES = ("rest_webservices",)
#: How long a signed assertion is good for: NetSuite takes at most 60 minutes.
ASSERTION_SECONDS = 3600


def base_url(settings: Settings, fields: NetSuiteCredential) -> str:
    """The account's REST web services: ``https://123456-sb1.suitetalk.api.netsuite.com``."""
    return settings.netsuite_url_template.format(account=fields.host_account).rstrip("/")


def token_url(settings: Settings, fields: NetSuiteCredential) -> str:
    return f"{base_url(settings, fields)}{TOKEN_PATH}"


class NetSuiteConnector:
    """New access tokens for an ``m2m`` credential, each bought with a new signed JWT."""

    def __init__(self, settings: Settings, fields: CredentialFields) -> None:
        assert isinstance(fields, NetSuiteCredential), type(fields)
        assert fields.auth == NetSuiteAuth.M2M, fields.auth
        assert fields.client_id is not None, "checked when saved"
        assert fields.certificate_id is not None, "checked when saved"
        assert fields.private_key is not None, "checked when saved"
        self._fields = fields
        self._client_id = fields.client_id
        self._certificate_id = fields.certificate_id
        self._private_key = fields.private_key
        self._endpoint = TokenEndpoint(
            token_url(settings, fields), fields.client_id, None, settings.http_timeout_seconds
        )

    def assertion(self, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self._client_id,
            "scope": list(SCOPES),
            "aud": self._endpoint.url,
            "iat": issued,
            "exp": issued + ASSERTION_SECONDS,
        }
        return jwt.encode(
            claims,
            self._private_key.get_secret_value(),
            algorithm=self._fields.algorithm.value,
            headers={"kid": self._certificate_id, "typ": "JWT"},
        )

    def renew(self, current: TokenSet | None) -> TokenSet:
        """``current`` is not needed: there is no refresh token, only the key."""
        return self._endpoint.jwt_assertion(self.assertion())


class TbaAuthorizer:
    """Signs each request (OAuth 1.0a, HMAC-SHA256) with a ``tba`` credential's consumer
    and token: the signature covers the method, the URL and its query (``replace=item``),
    not a JSON body. The token never changes, so its generation is always 0."""

    GENERATION = 0

    def __init__(self, fields: NetSuiteCredential) -> None:
        assert fields.auth == NetSuiteAuth.TBA, fields.auth
        assert fields.consumer_key is not None, "checked when saved"
        assert fields.consumer_secret is not None, "checked when saved"
        assert fields.token_secret is not None, "checked when saved"
        self._client = Client(
            fields.consumer_key,
            client_secret=fields.consumer_secret.get_secret_value(),
            resource_owner_key=fields.token_id,
            resource_owner_secret=fields.token_secret.get_secret_value(),
            signature_method=SIGNATURE_HMAC_SHA256,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
            realm=fields.realm,
        )

    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        # oauthlib's stubs type the method as a literal; AuthorizedClient's is a str
        _, headers, _ = self._client.sign(url, http_method=cast(Any, method.upper()))
        return str(headers["Authorization"]), self.GENERATION


def authorizer(
    engine: Engine,
    box: SecretBox,
    settings: Settings,
    credential_id: str,
    fields: NetSuiteCredential,
) -> Authorizer:
    """The credential's way in: a bearer token (``m2m``) or a signature (``tba``)."""
    if fields.auth == NetSuiteAuth.TBA:
        return TbaAuthorizer(fields)
    return BearerAuthorizer(engine, box, credential_id, NetSuiteConnector(settings, fields))
