"""``meterbridge api-keys``: keys for the admin API."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.organisations import DEFAULT_ORG_ID, create_api_key, list_api_keys, revoke_api_key
from workers.cli.common import console, print_table, session_for, settings

app = typer.Typer(
    help="API keys for the admin API (Authorization: Bearer <key>).", no_args_is_help=True
)


@app.command()
def create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "admin",
    org: Annotated[str, typer.Option(help="Organisation id.")] = DEFAULT_ORG_ID,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    with session_for(settings()) as session:
        key, plain = create_api_key(session, org, name)
    console.print(f"api key {key.id} for {org} (shown once, store it now):")
    typer.echo(plain)


@app.command("list")
def list_(org: Annotated[str, typer.Option(help="Organisation id.")] = DEFAULT_ORG_ID) -> None:
    """List an organisation's keys (their first characters only)."""
    with session_for(settings()) as session:
        keys = list_api_keys(session, org)
    print_table(
        "api keys",
        ["id", "name", "starts with", "created", "revoked"],
        [(k.id, k.name, k.hint + "…", k.created_at, k.revoked_at) for k in keys],
    )


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…), not the key.")],
    org: Annotated[str, typer.Option(help="Organisation id.")] = DEFAULT_ORG_ID,
) -> None:
    """Revoke a key: it stops working at once."""
    with session_for(settings()) as session:
        revoke_api_key(session, org, key_id)
    console.print(f"{key_id} revoked")
