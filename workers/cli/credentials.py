"""``meterbridge credentials``: the credentials that connect integrations to their
destinations, and connecting one with OAuth from a terminal.

``connect`` makes the same consent link as ``GET /api/v1/credentials/{id}/authorize``
(``workers.connections.consent``). Open it in any browser and consent; the provider then
sends that browser to the receiver's callback, and the command sees the credential become
connected. When that browser cannot reach the receiver (a server with no browser, behind a
firewall), use ``--paste``: the browser stops on an address that does not load; paste it,
and the command finishes the connection itself.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.connections.states import STATE_LIFETIME
from domain.db import transaction
from domain.errors import Conflict, TransientError
from domain.integrations.credentials import Credential, CredentialStatus, list_credentials
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from workers.cli.common import (
    AnyOrgOption,
    console,
    engine_for,
    fail,
    find,
    org_scope,
    print_table,
    session_for,
    settings,
    when,
)

app = typer.Typer(
    help=(
        "Credentials: what connects an integration to its destination. List them, and "
        "connect one that uses OAuth (Xero, QuickBooks) from a terminal. Create them with "
        "the admin API (POST /api/v1/credentials)."
    ),
    no_args_is_help=True,
)

Org = Annotated[str, typer.Option("--org", help="Organisation id.")]
CredentialId = Annotated[str, typer.Argument(help="The credential's id (crd_…).")]
POLL_SECONDS = 1.0


@app.command("list")
def list_(org: Org = DEFAULT_ORG_ID) -> None:
    """List an organisation's credentials and whether each is connected."""
    with session_for(settings()) as session:
        credentials = list_credentials(session, org)
        scope = org_scope(session, org)
    print_table(
        f"credentials {scope}",
        ["id", "name", "destination", "status", "tenant", "connected at", "reason"],
        [
            (
                c.id,
                c.name,
                c.destination,
                c.status,
                c.tenant_id or "-",
                when(c.connected_at),
                c.status_reason or "",
            )
            for c in credentials
        ],
    )


@app.command()
def connect(
    credential_id: CredentialId,
    org: AnyOrgOption = None,
    paste: Annotated[
        bool,
        typer.Option(
            "--paste",
            help="Read the address the browser ended on from the terminal, instead of "
            "waiting for the browser to reach the receiver's callback.",
        ),
    ] = False,
) -> None:
    """Connect a credential that uses OAuth (Xero, QuickBooks), or reconnect one.

    Prints a consent link, then waits until the credential is connected: at most 15
    minutes, as long as the link is valid (once)."""
    # imported here: the destinations' code loads the workers' metrics, which `meterbridge
    # worker` must set up before anything imports them
    from workers.connections.consent import authorization_url, complete_authorization
    from workers.connections.oauth2 import TokenRefused

    config = settings()
    box = secret_box(config)
    with engine_for(config) as engine:
        with transaction(engine) as session:
            credential = _credential(session, credential_id, org)
            try:
                link = authorization_url(session, box, config, credential.org_id, credential.id)
            except Conflict as exc:
                fail(str(exc), code=2)
            before = credential.connected_at
        # echo, not the console: the link must stay one line to be copied whole
        typer.echo(f"Open this link in a browser and consent:\n\n{link.url}\n")
        console.print(
            f"The provider will send the browser to {link.redirect_uri} (register it in your "
            "app).",
            markup=False,
            highlight=False,
        )
        if paste:
            address = typer.prompt("Paste the address the browser ended on")
            params = dict(parse_qsl(urlsplit(address.strip()).query))
            try:
                connected = complete_authorization(
                    engine, box, config, credential.destination, params
                )
            except (TokenRefused, TransientError) as exc:
                fail(f"not connected: {exc}")
            console.print(_connected(connected), markup=False, highlight=False)
            return
        connected = _wait(engine, credential.id, before)
    console.print(_connected(connected), markup=False, highlight=False)


def _credential(session: Session, credential_id: str, org: str | None) -> Credential:
    return find(session, Credential, credential_id, "credential", org)


def _wait(engine: Engine, credential_id: str, before: datetime | None) -> Credential:
    deadline = time.monotonic() + STATE_LIFETIME.total_seconds()
    with console.status("waiting for the consent…"):
        while time.monotonic() < deadline:
            with Session(engine) as session:
                credential = session.get(Credential, credential_id)
            assert credential is not None
            if (
                credential.status == CredentialStatus.CONNECTED
                and credential.connected_at != before
            ):
                return credential
            time.sleep(POLL_SECONDS)
    fail("no consent arrived within 15 minutes: run the command again for a new link")


def _connected(credential: Credential) -> str:
    tenant = f" to {credential.tenant_id}" if credential.tenant_id else ""
    return f"{credential.id} ({credential.name}) is connected{tenant}"
