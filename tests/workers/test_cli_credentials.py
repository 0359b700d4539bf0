"""``meterbridge credentials``: connecting a Xero credential from a terminal with
``--paste`` (the browser that consents cannot reach the receiver), against the fake Xero,
as a real process reading what a person types."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from domain.db import transaction
from domain.integrations.credentials import Credential, CredentialStatus, create_credential
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from tests.support.environment import REPO, Environment
from tests.support.fake_xero import CLIENT_ID, CLIENT_SECRET, FakeXero
from tests.support.processes import CLI
from tests.workers.conftest import Cli


@pytest.fixture(scope="module")
def fake_xero() -> Iterator[FakeXero]:
    server = FakeXero().start()
    yield server
    server.stop()


def xero_credential(env: Environment, tenant_id: str) -> str:
    with transaction(env.engine) as session:
        return create_credential(
            session,
            secret_box(env.settings),
            DEFAULT_ORG_ID,
            name="books",
            destination="xero",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            tenant_id=tenant_id,
        ).id


def test_connect_with_paste_finishes_the_connection_itself(
    env: Environment, fake_xero: FakeXero
) -> None:
    credential_id = xero_credential(env, fake_xero.tenant_id)
    process_env = env.process_env(
        METERBRIDGE_XERO_AUTHORIZE_URL=fake_xero.authorize_url,
        METERBRIDGE_XERO_TOKEN_URL=fake_xero.token_url,
        METERBRIDGE_XERO_API_BASE=fake_xero.base_url,
    )
    command = subprocess.Popen(
        [*CLI, "credentials", "connect", credential_id, "--paste"],
        env=process_env,
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert command.stdout is not None
    assert command.stdin is not None
    # the command prints the consent link; a person opens it elsewhere and consents
    link = next(line.strip() for line in command.stdout if line.startswith("http"))
    assert link.startswith(fake_xero.authorize_url + "?")
    consent = httpx.get(link)
    assert consent.status_code == 302, consent.text
    ended_on = consent.headers["location"]  # the page that does not load

    command.stdin.write(ended_on + "\n")
    command.stdin.flush()
    output = command.stdout.read()

    assert command.wait(timeout=60) == 0, output
    assert f"{credential_id} (books) is connected to {fake_xero.tenant_id}" in " ".join(
        output.split()
    )
    with transaction(env.engine) as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert (credential.status, credential.tenant_id) == (
            CredentialStatus.CONNECTED,
            fake_xero.tenant_id,
        )
    # the link was used up: pasting it again connects nothing
    again = subprocess.run(
        [*CLI, "credentials", "connect", credential_id, "--paste"],
        env=process_env,
        cwd=REPO,
        input=ended_on + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2, again.stdout + again.stderr
    assert "already used" in again.stderr


def test_list_shows_each_credentials_status(env: Environment, cli: Cli) -> None:
    credential_id = xero_credential(env, "tenant-1")
    result = cli("credentials", "list")
    assert result.exit_code == 0, result.output
    assert credential_id in result.output
    assert "awaiting_authorization" in result.output


def test_connect_refuses_a_credential_with_nothing_to_authorize(env: Environment, cli: Cli) -> None:
    with transaction(env.engine) as session:
        credential_id = create_credential(
            session,
            secret_box(env.settings),
            DEFAULT_ORG_ID,
            name="cb",
            destination="chargebee",
            site="acme",
            api_key="k",
        ).id
    result = cli("credentials", "connect", credential_id)
    assert result.exit_code == 2
    assert "nothing to authorize" in result.output
