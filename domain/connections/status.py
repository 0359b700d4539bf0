"""A credential's status as its connection changes."""

from __future__ import annotations

from sqlmodel import Session

from domain.clock import utcnow
from domain.integrations.credentials import Credential, CredentialStatus

#: A reason longer than this is cut: it is shown, not parsed.
MAX_REASON = 1000


def mark_connected(session: Session, credential: Credential, tenant_id: str | None) -> None:
    credential.status = CredentialStatus.CONNECTED
    credential.status_reason = None
    credential.connected_at = utcnow()
    if tenant_id is not None:
        credential.tenant_id = tenant_id
    session.add(credential)
    session.flush()


def mark_needs_reconnect(session: Session, credential: Credential, reason: str) -> None:
    """The destination refused the credential's refresh token (revoked, expired): runs
    fail with ``integration.authentication.error`` until a person consents again."""
    credential.status = CredentialStatus.NEEDS_RECONNECT
    credential.status_reason = reason[:MAX_REASON]
    session.add(credential)
    session.flush()
