"""Consent in the browser, bound to the credential that asked for it.

``begin_authorization`` makes a random ``state`` for the provider's consent URL and keeps
only its SHA-256: the state is a bearer secret until it is used. ``take_state`` accepts a
state once, before it expires, for the destination whose callback it came to, and answers
the credential and organisation it was made for: a callback cannot connect a credential
of another organisation, and a replayed or stale one connects nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col

from domain.clock import utcnow
from domain.errors import InvalidInput

#: How long a person has between asking for the consent URL and coming back.
STATE_LIFETIME = timedelta(minutes=15)


class OAuthState(SQLModel, table=True):
    __tablename__ = "oauth_state"

    #: SHA-256 of the state, hex.
    id: str = Field(primary_key=True, max_length=64)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    credential_id: str = Field(foreign_key="credential.id", index=True, max_length=40)
    destination: str = Field(max_length=32)
    redirect_uri: str = Field(max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class StateRefused(InvalidInput):
    """The callback's state is unknown, used, expired or for another destination."""


def begin_authorization(
    session: Session,
    *,
    org_id: str,
    credential_id: str,
    destination: str,
    redirect_uri: str,
    lifetime: timedelta = STATE_LIFETIME,
) -> str:
    """A new state for the credential's consent URL."""
    state = secrets.token_urlsafe(32)
    session.add(
        OAuthState(
            id=_digest(state),
            org_id=org_id,
            credential_id=credential_id,
            destination=destination,
            redirect_uri=redirect_uri,
            expires_at=utcnow() + lifetime,
        )
    )
    session.flush()
    return state


def take_state(session: Session, destination: str, state: str) -> OAuthState:
    """The state's record, now used. Raises ``StateRefused``."""
    if not state or len(state) > 200:
        raise StateRefused("the callback has no valid state", field="query.state")
    now = utcnow()
    taken = session.exec(  # one statement: of two callbacks with one state, one wins
        sa.update(OAuthState)
        .where(
            col(OAuthState.id) == _digest(state),
            col(OAuthState.destination) == destination,
            col(OAuthState.used_at).is_(None),
            col(OAuthState.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(OAuthState.id))
    ).first()
    if taken is None:
        raise StateRefused(
            "this authorization link is unknown, already used or expired: ask for a new "
            "one (GET /api/v1/credentials/{id}/authorize or `meterbridge credentials connect`)",
            field="query.state",
        )
    record = session.get(OAuthState, taken[0])
    assert record is not None
    return record


def consent_url(
    authorize_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    state: str,
) -> str:
    """The provider's consent page for an authorization-code grant (RFC 6749 §4.1.1)."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
    }
    separator = "&" if "?" in authorize_url else "?"
    return f"{authorize_url}{separator}{urlencode(query)}"


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()
