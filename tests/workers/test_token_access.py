"""``workers.connections.access``: one refresh however many workers ask at once, the new
tokens stored before they are used, and a refused refresh marks the credential.

The connector here stands in for a token endpoint (it counts its calls and takes a while
to answer, so that racing threads really overlap); the database is the real one, whose
row lock is what is being tested."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from domain.clock import utcnow
from domain.connections.tokens import TokenSet, read_tokens, save_tokens
from domain.db import transaction
from domain.integrations.credentials import Credential, CredentialStatus, update_credential
from domain.integrations.errors import AuthenticationFailed
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from tests.domain.test_connections import xero_credential
from tests.support.environment import Environment
from workers.connections.access import access_token
from workers.connections.oauth2 import TokenRefused


class RotatingEndpoint:
    """Answers each refresh with new tokens and invalidates the refresh token used, as
    Xero does (without the grace): a refresh token used twice is ``invalid_grant``."""

    def __init__(self, current_refresh: str, delay: float = 0.2) -> None:
        self.valid = {current_refresh}
        self.delay = delay
        self.calls = 0
        self.invalid_grants = 0
        self._lock = threading.Lock()

    def renew(self, current: TokenSet | None) -> TokenSet:
        assert current is not None
        time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            if current.refresh_token not in self.valid:
                self.invalid_grants += 1
                raise TokenRefused("invalid_grant")
            self.valid.discard(current.refresh_token)
            fresh = f"refresh-{self.calls}"
            self.valid.add(fresh)
            return TokenSet(f"access-{self.calls}", utcnow() + timedelta(minutes=30), fresh)


def connected(env: Environment, *, expires_in: timedelta) -> str:
    credential_id = xero_credential(env)
    box = secret_box(env.settings)
    with transaction(env.engine) as session:
        tokens = TokenSet("access-0", utcnow() + expires_in, "refresh-0")
        save_tokens(session, box, DEFAULT_ORG_ID, credential_id, tokens)
        credential = session.get(Credential, credential_id)
        assert credential is not None
        credential.status = CredentialStatus.CONNECTED
        session.add(credential)
    return credential_id


def test_twenty_workers_find_an_expired_token_and_one_refreshes(env: Environment) -> None:
    credential_id = connected(env, expires_in=timedelta(seconds=-1))
    endpoint = RotatingEndpoint("refresh-0")
    box = secret_box(env.settings)
    with ThreadPoolExecutor(20) as pool:
        tokens = list(
            pool.map(lambda _: access_token(env.engine, box, credential_id, endpoint), range(20))
        )
    assert endpoint.calls == 1
    assert endpoint.invalid_grants == 0
    assert {t.token for t in tokens} == {"access-1"}
    with transaction(env.engine) as session:
        stored = read_tokens(session, box, credential_id)
    assert stored is not None
    assert stored.tokens.refresh_token == "refresh-1"  # the rotated one was kept


def test_a_good_token_is_used_without_asking(env: Environment) -> None:
    credential_id = connected(env, expires_in=timedelta(minutes=20))
    endpoint = RotatingEndpoint("refresh-0")
    access = access_token(env.engine, secret_box(env.settings), credential_id, endpoint)
    assert (access.token, endpoint.calls) == ("access-0", 0)


def test_a_refused_token_is_refreshed_once_for_all_who_saw_it_refused(env: Environment) -> None:
    credential_id = connected(env, expires_in=timedelta(minutes=20))
    endpoint = RotatingEndpoint("refresh-0", delay=0.05)
    box = secret_box(env.settings)
    first = access_token(env.engine, box, credential_id, endpoint)
    # two workers were refused the same token: one refresh serves both
    again = [
        access_token(env.engine, box, credential_id, endpoint, refused=first.generation)
        for _ in range(2)
    ]
    assert endpoint.calls == 1
    assert [a.token for a in again] == ["access-1", "access-1"]


def test_a_refused_refresh_marks_the_credential_for_reconnection(env: Environment) -> None:
    credential_id = connected(env, expires_in=timedelta(seconds=-1))
    endpoint = RotatingEndpoint("some-other-token", delay=0)
    box = secret_box(env.settings)
    with pytest.raises(AuthenticationFailed) as raised:
        access_token(env.engine, box, credential_id, endpoint)
    assert isinstance(raised.value, TokenRefused)
    with transaction(env.engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert credential.status == CredentialStatus.NEEDS_RECONNECT
        assert "invalid_grant" in (credential.status_reason or "")
    # and later runs fail at once, without asking the destination again
    with pytest.raises(AuthenticationFailed, match="needs to be connected again"):
        access_token(env.engine, box, credential_id, endpoint)
    assert endpoint.calls == 1


def test_a_credential_not_yet_authorized_fails_the_run(env: Environment) -> None:
    credential_id = xero_credential(env)
    endpoint = RotatingEndpoint("refresh-0")
    with pytest.raises(AuthenticationFailed, match="not connected yet"):
        access_token(env.engine, secret_box(env.settings), credential_id, endpoint)
    assert endpoint.calls == 0


class ClientCredentials:
    """A client-credentials token endpoint that refuses the secret until it is fixed."""

    def __init__(self) -> None:
        self.accept = False
        self.calls = 0

    def renew(self, current: TokenSet | None) -> TokenSet:
        self.calls += 1
        if not self.accept:
            raise TokenRefused("invalid_client")
        return TokenSet(f"cc-{self.calls}", utcnow() + timedelta(minutes=30))


def test_new_secrets_start_a_refused_connection_again(env: Environment) -> None:
    credential_id = xero_credential(env, oauth_grant="client_credentials")
    box = secret_box(env.settings)
    endpoint = ClientCredentials()
    with pytest.raises(AuthenticationFailed):
        access_token(env.engine, box, credential_id, endpoint)
    # when the credential is given a new secret, it is connected again and tries again
    with transaction(env.engine) as session:
        updated = update_credential(
            session, box, DEFAULT_ORG_ID, credential_id, client_secret="rotated"
        )
        assert (updated.status, updated.status_reason) == (CredentialStatus.CONNECTED, None)
    endpoint.accept = True
    assert access_token(env.engine, box, credential_id, endpoint).token == "cc-2"
