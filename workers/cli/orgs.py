"""``meterbridge orgs`` and ``meterbridge users``: who the data belongs to, who is told."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.organisations import DEFAULT_ORG_ID, create_organisation, list_organisations
from domain.users import create_user, list_users
from workers.cli.common import console, org_scope, print_json, print_table, session_for, settings

orgs = typer.Typer(help="Organisations: every object belongs to one.", no_args_is_help=True)
users = typer.Typer(
    help="Users of an organisation (they receive notifications).", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@orgs.command("create")
def create_org(name: Annotated[str, typer.Argument(help="The organisation's name.")]) -> None:
    """Create an organisation and print its first API key (shown once)."""
    with session_for(settings()) as session:
        organisation, key = create_organisation(session, name)
    typer.echo(f"organisation {organisation.id} ({name})")  # a name is data, not markup
    console.print("first API key (shown once, store it now):")
    typer.echo(key)


@orgs.command("list")
def list_orgs(as_json: JsonOption = False) -> None:
    """List organisations."""
    with session_for(settings()) as session:
        found = list_organisations(session)
    if as_json:
        print_json([org.model_dump() for org in found])
        return
    print_table(
        "organisations", ["id", "name", "created"], [(o.id, o.name, o.created_at) for o in found]
    )


@users.command("create")
def create(
    name: Annotated[str, typer.Option(help="Full name.")],
    email: Annotated[str, typer.Option(help="Where notifications go.")],
    org: Annotated[str, typer.Option("--org", help="Organisation id.")] = DEFAULT_ORG_ID,
) -> None:
    """Add a user to an organisation."""
    with session_for(settings()) as session:
        user = create_user(session, org, name, email)
    typer.echo(f"user {user.id} {user.email}")


@users.command("list")
def list_(
    org: Annotated[str, typer.Option("--org", help="Organisation id.")] = DEFAULT_ORG_ID,
    as_json: JsonOption = False,
) -> None:
    """List an organisation's users."""
    with session_for(settings()) as session:
        found = list_users(session, org)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([user.model_dump() for user in found])
        return
    print_table(f"users {scope}", ["id", "name", "email"], [(u.id, u.name, u.email) for u in found])
