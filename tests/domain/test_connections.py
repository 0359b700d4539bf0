"""Credentials that connect with OAuth: their secrets, the consent's single-use state,
and the tokens kept for them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from domain.clock import utcnow
from domain.connections.states import (
    OAuthState,
    StateRefused,
    begin_authorization,
    consent_url,
    take_state,
)
from domain.connections.tokens import CredentialToken, TokenSet, read_tokens, save_tokens, token_set
from domain.db import transaction
from domain.integrations.credentials import (
    Credential,
    CredentialStatus,
    create_credential,
    open_credential,
)
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import SecretBox, secret_box
from tests.support.environment import Environment


def xero_credential(env: Environment, org_id: str = DEFAULT_ORG_ID, **fields: object) -> str:
    with transaction(env.engine) as session:
        credential = create_credential(
            session,
            secret_box(env.settings),
            org_id,
            name="xero",
            destination="xero",
            client_id="client-1",
            client_secret="s3cret-client",
            **fields,
        )
        return credential.id


def begin(env: Environment, credential_id: str, **kwargs: object) -> str:
    with transaction(env.engine) as session:
        return begin_authorization(
            session,
            org_id=DEFAULT_ORG_ID,
            credential_id=credential_id,
            destination="xero",
            redirect_uri="http://127.0.0.1:8000/oauth/xero/callback",
            **kwargs,  # type: ignore[arg-type]
        )


def test_an_authorization_code_credential_waits_for_consent_and_hides_its_secret(
    env: Environment,
) -> None:
    credential_id = xero_credential(env)
    with transaction(env.engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert credential.status == CredentialStatus.AWAITING_AUTHORIZATION
        assert credential.connected_at is None
        assert "s3cret-client" not in credential.secret_ciphertext
        assert "client_secret" not in credential.options
        fields = open_credential(secret_box(env.settings), credential)
    assert fields.client_secret.get_secret_value() == "s3cret-client"  # type: ignore[attr-defined]


def test_a_custom_connection_is_connected_from_the_start(env: Environment) -> None:
    credential_id = xero_credential(env, oauth_grant="client_credentials")
    with transaction(env.engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert credential.status == CredentialStatus.CONNECTED


def test_a_credential_written_before_0008_still_opens(env: Environment) -> None:
    """Rows written before the secrets became a JSON object hold the bare API key."""
    box = secret_box(env.settings)
    with transaction(env.engine) as session:
        credential = create_credential(
            session,
            box,
            DEFAULT_ORG_ID,
            name="cb",
            destination="chargebee",
            site="acme",
            api_key="new-style",
        )
        credential.secret_ciphertext = box.encrypt("live_old_key")
        session.add(credential)
        fields = open_credential(box, credential)
    assert fields.api_key.get_secret_value() == "live_old_key"  # type: ignore[attr-defined]


def test_a_state_is_taken_once(env: Environment) -> None:
    credential_id = xero_credential(env)
    state = begin(env, credential_id)
    with transaction(env.engine) as session:
        stored = session.exec(sa.select(OAuthState.id)).scalars().all()  # type: ignore[call-overload]
        assert state not in stored  # only its digest is kept
        record = take_state(session, "xero", state)
        assert record.credential_id == credential_id
    with pytest.raises(StateRefused), transaction(env.engine) as session:
        take_state(session, "xero", state)


def test_a_state_expires_and_belongs_to_its_destination(env: Environment) -> None:
    credential_id = xero_credential(env)
    expired = begin(env, credential_id, lifetime=timedelta(seconds=-1))
    with pytest.raises(StateRefused), transaction(env.engine) as session:
        take_state(session, "xero", expired)
    state = begin(env, credential_id)
    with pytest.raises(StateRefused), transaction(env.engine) as session:
        take_state(session, "quickbooks", state)
    with pytest.raises(StateRefused), transaction(env.engine) as session:
        take_state(session, "xero", state + "x")


def test_the_consent_url_carries_the_state_and_scopes() -> None:
    url = consent_url(
        "https://login.xero.com/identity/connect/authorize",
        client_id="abc",
        redirect_uri="https://mb.example.com/oauth/xero/callback",
        scopes=("offline_access", "accounting.invoices"),
        state="st4te",
    )
    assert url == (
        "https://login.xero.com/identity/connect/authorize?response_type=code&client_id=abc"
        "&redirect_uri=https%3A%2F%2Fmb.example.com%2Foauth%2Fxero%2Fcallback"
        "&scope=offline_access+accounting.invoices&state=st4te"
    )


def test_tokens_are_kept_encrypted_and_counted(env: Environment) -> None:
    credential_id = xero_credential(env)
    box: SecretBox = secret_box(env.settings)
    first = TokenSet("access-1", utcnow() + timedelta(minutes=30), "refresh-1")
    second = TokenSet("access-2", utcnow() + timedelta(minutes=30), "refresh-2")
    with transaction(env.engine) as session:
        assert save_tokens(session, box, DEFAULT_ORG_ID, credential_id, first) == 1
        assert save_tokens(session, box, DEFAULT_ORG_ID, credential_id, second) == 2
    with transaction(env.engine) as session:
        row = session.get(CredentialToken, credential_id)
        assert row is not None
        assert "access-2" not in row.access_token_ciphertext
        assert "refresh-2" not in (row.refresh_token_ciphertext or "")
        stored = read_tokens(session, box, credential_id)
    assert stored is not None
    assert (stored.tokens.access_token, stored.tokens.refresh_token, stored.generation) == (
        "access-2",
        "refresh-2",
        2,
    )
    assert "access-2" not in repr(stored)


def test_token_answers() -> None:
    tokens = token_set({"access_token": "a", "expires_in": "3600", "token_type": "bearer"})
    assert tokens.refresh_token is None
    assert tokens.usable()
    kept = token_set({"access_token": "a", "expires_in": 1800}, keep_refresh="r-old")
    assert kept.refresh_token == "r-old"
    rotated = token_set(
        {
            "access_token": "a",
            "expires_in": 3600,
            "refresh_token": "r-new",
            "x_refresh_token_expires_in": 8_640_000,
        },
        keep_refresh="r-old",
    )
    assert rotated.refresh_token == "r-new"
    assert rotated.refresh_expires_at is not None
    assert not token_set({"access_token": "a", "expires_in": 30}).usable()  # within the margin
