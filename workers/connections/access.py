"""An access token a run can use now, refreshed at most once however many workers ask.

Every worker reads the stored tokens first and uses them while they are good
(``TokenSet.usable``). One that finds them expiring, or was refused with them (a 401),
locks the credential's row (``SELECT … FOR UPDATE``) and reads again: if another worker
refreshed while it waited, it uses that worker's tokens. Otherwise it asks the destination
for new ones and stores them in the same transaction, which commits before the new access
token is used: a rotated refresh token is never known only to a process that can die.

A crash between the provider's answer and the commit loses the new tokens but not the
connection: the stored refresh token is the one just used, and Xero and QuickBooks still
accept it for a grace period after rotating it.

A refused refresh (``TokenRefused``: revoked, expired) marks the credential
``needs_reconnect`` and raises ``AuthenticationFailed``: the run ends ``AUTH_FAILED`` with
``integration.authentication.error``, which counts toward the config's failure counter.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from domain.connections.status import mark_needs_reconnect
from domain.connections.tokens import read_tokens, save_tokens
from domain.db import transaction
from domain.errors import TransientError
from domain.integrations.credentials import Credential, CredentialStatus
from domain.integrations.errors import AuthenticationFailed
from domain.secrets import SecretBox
from workers.connections.connector import Connector
from workers.connections.oauth2 import TokenRefused

#: The longest a worker waits for another's refresh before it gives its turn back.
LOCK_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Access:
    token: str
    #: Which tokens these are: give it back as ``refused`` when the destination refuses
    #: the token, and the next call refreshes (unless another worker already did).
    generation: int

    def __repr__(self) -> str:  # never print a token
        return f"Access(generation={self.generation})"


def access_token(
    engine: Engine,
    box: SecretBox,
    credential_id: str,
    connector: Connector,
    *,
    refused: int | None = None,
) -> Access:
    with transaction(engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None, credential_id
        _check_connected(credential)
        stored = read_tokens(session, box, credential_id)
    if stored is not None and stored.tokens.usable() and stored.generation != refused:
        return Access(stored.tokens.access_token, stored.generation)
    try:
        return _renew(engine, box, credential_id, connector, refused)
    except OperationalError as exc:  # lock_timeout, a lost connection
        raise TransientError(
            f"could not take the credential's refresh lock: {type(exc.orig).__name__}"
        ) from None


def _renew(
    engine: Engine, box: SecretBox, credential_id: str, connector: Connector, refused: int | None
) -> Access:
    refusal: TokenRefused | None = None
    with transaction(engine) as session:
        session.execute(sa.text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
        credential = session.get(Credential, credential_id, with_for_update=True)
        assert credential is not None, credential_id
        _check_connected(credential)
        stored = read_tokens(session, box, credential_id)
        if stored is not None and stored.tokens.usable() and stored.generation != refused:
            return Access(stored.tokens.access_token, stored.generation)
        try:
            tokens = connector.renew(stored.tokens if stored is not None else None)
        except TokenRefused as exc:
            mark_needs_reconnect(session, credential, str(exc))
            refusal = exc
        else:
            generation = save_tokens(session, box, credential.org_id, credential_id, tokens)
            return Access(tokens.access_token, generation)
    raise refusal


def _check_connected(credential: Credential) -> None:
    if credential.status == CredentialStatus.AWAITING_AUTHORIZATION:
        raise AuthenticationFailed(
            f"credential {credential.name!r} ({credential.id}) is not connected yet: "
            "authorize it (GET /api/v1/credentials/{id}/authorize or `meterbridge "
            "credentials connect`)"
        )
    if credential.status == CredentialStatus.NEEDS_RECONNECT:
        raise AuthenticationFailed(
            f"credential {credential.name!r} ({credential.id}) needs to be connected again "
            f"({credential.status_reason}): authorize it again, or give it new secrets "
            "(PATCH /api/v1/credentials/{id})"
        )
