"""What a destination that connects with OAuth tells meterbridge: how to get new tokens
for a credential, and, for consent in the browser, where the consent page is and how a
consent becomes tokens and a tenant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from domain.connections.tokens import TokenSet
from domain.destinations.spec import CredentialFields
from domain.settings import Settings


class Connector(Protocol):
    def renew(self, current: TokenSet | None) -> TokenSet:
        """New tokens: by ``current``'s refresh token, or by the credential's own secret
        (client credentials). Raises ``TokenRefused`` when the destination refuses, and
        ``TransientError`` when it does not answer."""


@dataclass(frozen=True)
class Connected:
    tokens: TokenSet
    #: The remote organisation the consent was for: a Xero tenant, a QuickBooks realm.
    tenant_id: str | None


class Consent(Protocol):
    """A destination with OAuth's authorization code grant."""

    def consent_page(self) -> str:
        """The provider's authorization endpoint."""

    @property
    def scopes(self) -> tuple[str, ...]: ...

    @property
    def client_id(self) -> str: ...

    def exchange(self, code: str, redirect_uri: str, params: Mapping[str, str]) -> Connected:
        """Tokens for the callback's code, and the tenant it connects (``params``: the
        callback's query, e.g. QuickBooks' ``realmId``)."""


class ConsentFactory(Protocol):
    def __call__(self, settings: Settings, fields: CredentialFields) -> Consent: ...
