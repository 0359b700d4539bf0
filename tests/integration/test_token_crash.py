"""A worker SIGKILLed in the middle of a refresh, after the provider rotated the refresh
token and before the new one was stored: the lock it held is released with its
connection, and the next worker refreshes with the refresh token still stored, which the
provider accepts within its grace period (Xero: 30 minutes). The connection survives."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from domain.clock import utcnow
from domain.connections.status import mark_connected
from domain.connections.tokens import TokenSet, read_tokens, save_tokens
from domain.db import transaction
from domain.integrations.credentials import create_credential, get_credential, open_credential
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from tests.support.environment import REPO, Environment
from tests.support.fake_xero import CLIENT_ID, CLIENT_SECRET, FakeXero
from tests.support.processes import wait_for
from workers.connections.access import access_token
from workers.destinations.xero.connect import xero_app

REFRESH = """
import sys
from domain.db import make_engine, transaction
from domain.integrations.credentials import get_credential, open_credential
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from domain.settings import load_settings
from workers.connections.access import access_token
from workers.destinations.xero.connect import xero_app

settings = load_settings()
engine = make_engine(settings)
box = secret_box(settings)
with transaction(engine) as session:
    fields = open_credential(box, get_credential(session, DEFAULT_ORG_ID, sys.argv[1]))
print("refreshing", flush=True)
access_token(engine, box, sys.argv[1], xero_app(settings, fields))
print("refreshed", flush=True)
"""


@pytest.fixture
def fake_xero() -> Iterator[FakeXero]:
    server = FakeXero(hang_seconds=60).start()
    yield server
    server.stop()


def expired_connection(env: Environment, fake: FakeXero) -> str:
    """A connected Xero credential whose access token has just expired."""
    consented = fake.tokens(scope="offline_access accounting.invoices")
    box = secret_box(env.settings)
    with transaction(env.engine) as session:
        credential = create_credential(
            session,
            box,
            DEFAULT_ORG_ID,
            name="xero",
            destination="xero",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
        tokens = TokenSet(
            consented["access_token"], utcnow() - timedelta(seconds=1), consented["refresh_token"]
        )
        save_tokens(session, box, DEFAULT_ORG_ID, credential.id, tokens)
        mark_connected(session, credential, fake.tenant_id)
        return credential.id


def test_a_worker_killed_mid_refresh_loses_neither_the_lock_nor_the_connection(
    env: Environment, fake_xero: FakeXero
) -> None:
    credential_id = expired_connection(env, fake_xero)
    xero = {"METERBRIDGE_XERO_TOKEN_URL": fake_xero.token_url}
    # the provider will rotate the refresh token and then not answer
    fake_xero.auth.fail_next_token(1, "apply_then_hang")
    worker = subprocess.Popen(
        [sys.executable, "-c", REFRESH, credential_id],
        env=env.process_env(**xero, METERBRIDGE_HTTP_TIMEOUT_SECONDS="120"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rotated = wait_for(
        lambda: [r for r in fake_xero.auth.token_requests if r.fault == "apply_then_hang"],
        timeout=30,
        what="the refresh to reach the provider",
    )
    assert rotated
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=10) == -signal.SIGKILL

    # the next worker is not held by the dead one's lock, and still connects
    settings = env.settings.model_copy(update={"xero_token_url": fake_xero.token_url})
    box = secret_box(settings)
    with transaction(env.engine) as session:
        fields = open_credential(box, get_credential(session, DEFAULT_ORG_ID, credential_id))
    access = access_token(env.engine, box, credential_id, xero_app(settings, fields))

    last = fake_xero.auth.token_requests[-1]
    assert (last.grant_type, last.outcome, last.reuse) == ("refresh_token", "ok", True)
    assert fake_xero.auth.invalid_grants == 0
    with transaction(env.engine) as session:
        stored = read_tokens(session, box, credential_id)
        credential = get_credential(session, DEFAULT_ORG_ID, credential_id)
    assert stored is not None
    assert stored.tokens.access_token == access.token
    assert credential.status == "connected"
