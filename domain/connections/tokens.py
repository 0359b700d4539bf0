"""A credential's OAuth tokens: one row per credential, both tokens encrypted.

Refresh tokens rotate (Xero, QuickBooks): each refresh answers a new one, and the old one
stops working soon after. So the row is the single place the current refresh token lives,
it is replaced in the same transaction that learnt the new one, and a worker refreshes
only while it holds the row's lock (``read_tokens(..., lock=True)``), re-reading it first:
another worker may have refreshed while it waited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Field, Session, SQLModel, select

from domain.clock import utcnow
from domain.errors import TransientError
from domain.secrets import SecretBox

#: An access token this close to its expiry is refreshed rather than used: a call that
#: starts with it must still be inside its lifetime when it arrives.
EXPIRY_MARGIN = timedelta(seconds=60)


class CredentialToken(SQLModel, table=True):
    __tablename__ = "credential_token"

    credential_id: str = Field(foreign_key="credential.id", primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    access_token_ciphertext: str
    expires_at: datetime
    refresh_token_ciphertext: str | None = None
    refresh_expires_at: datetime | None = None
    #: How many times the tokens were replaced: a worker whose token was refused asks for
    #: a refresh of the generation it used, and finds it already done if another worker
    #: refreshed meanwhile.
    generation: int = 0
    refreshed_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None

    def __repr__(self) -> str:  # never print a token
        return f"TokenSet(expires_at={self.expires_at.isoformat()})"

    def usable(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) + EXPIRY_MARGIN < self.expires_at


@dataclass(frozen=True)
class StoredTokens:
    tokens: TokenSet
    generation: int


class BadTokenAnswer(TransientError):
    """A token endpoint answered 200 with something that is not a token."""


def token_set(answer: Mapping[str, Any], *, keep_refresh: str | None = None) -> TokenSet:
    """The tokens of a token endpoint's answer (RFC 6749 §5.1). ``expires_in`` may be a
    number or a string of digits (NetSuite); QuickBooks adds
    ``x_refresh_token_expires_in``. ``keep_refresh``: the refresh token to keep when the
    answer has none (a provider that does not rotate)."""
    access = answer.get("access_token")
    try:
        expires_in = float(answer.get("expires_in", 0))
    except (TypeError, ValueError):
        expires_in = 0
    if not isinstance(access, str) or not access or expires_in <= 0:
        raise BadTokenAnswer("the token endpoint answered without an access token or expiry")
    now = utcnow()
    refresh = answer.get("refresh_token") or keep_refresh
    refresh_in = answer.get("x_refresh_token_expires_in")
    return TokenSet(
        access_token=access,
        expires_at=now + timedelta(seconds=expires_in),
        refresh_token=refresh if isinstance(refresh, str) else None,
        refresh_expires_at=(
            now + timedelta(seconds=float(refresh_in))
            if isinstance(refresh_in, int | float)
            else None
        ),
    )


def read_tokens(
    session: Session, box: SecretBox, credential_id: str, *, lock: bool = False
) -> StoredTokens | None:
    """``lock``: hold the row (``FOR UPDATE``) until the transaction ends, so that this
    transaction alone may refresh."""
    statement = select(CredentialToken).where(CredentialToken.credential_id == credential_id)
    row = session.exec(statement.with_for_update() if lock else statement).first()
    if row is None:
        return None
    tokens = TokenSet(
        access_token=box.decrypt(row.access_token_ciphertext),
        expires_at=row.expires_at,
        refresh_token=(
            box.decrypt(row.refresh_token_ciphertext) if row.refresh_token_ciphertext else None
        ),
        refresh_expires_at=row.refresh_expires_at,
    )
    return StoredTokens(tokens, row.generation)


def save_tokens(
    session: Session, box: SecretBox, org_id: str, credential_id: str, tokens: TokenSet
) -> int:
    """Replace the credential's tokens; answers the new generation."""
    row = session.get(CredentialToken, credential_id, with_for_update=True)
    if row is None:
        row = CredentialToken(
            credential_id=credential_id,
            org_id=org_id,
            access_token_ciphertext="",
            expires_at=utcnow(),
        )
    row.access_token_ciphertext = box.encrypt(tokens.access_token)
    row.expires_at = tokens.expires_at
    row.refresh_token_ciphertext = (
        box.encrypt(tokens.refresh_token) if tokens.refresh_token else None
    )
    row.refresh_expires_at = tokens.refresh_expires_at
    row.generation += 1
    row.refreshed_at = utcnow()
    session.add(row)
    session.flush()
    return row.generation


def forget_tokens(session: Session, credential_id: str) -> None:
    row = session.get(CredentialToken, credential_id)
    if row is not None:
        session.delete(row)
        session.flush()
