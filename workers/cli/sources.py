"""``meterbridge sources``: the configured intakes."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from domain.clock import utcnow
from domain.organisations import DEFAULT_ORG_ID
from domain.providers import PROVIDERS
from domain.secrets import secret_box
from domain.settings import Settings
from domain.sources import (
    Source,
    create_source,
    disable_source,
    enable_and_release,
    list_sources,
)
from domain.users import check_users
from workers.cli.common import (
    AnyOrgOption,
    cli_command,
    console,
    engine_for,
    enqueue,
    find,
    org_scope,
    print_fields,
    print_json,
    print_table,
    receiver_url,
    session_for,
    settings,
    signed_curl,
    when,
)

PROVIDER_HINTS = {
    "chargebee": "with basic authentication set to the secret (username:password)",
    "stripe": "and set the secret to the endpoint's signing secret (--secret whsec_…)",
    "paddle": "and set the secret to the destination's secret key (--secret pdl_ntfset_…)",
}

app = typer.Typer(
    help="Sources: where webhooks come in (POST /webhooks/{id}).", no_args_is_help=True
)

OrgOption = Annotated[str, typer.Option("--org", help="Organisation id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _as_dict(source: Source) -> dict[str, object]:
    return {
        "id": source.id,
        "name": source.name,
        "provider": source.provider,
        "enabled": source.enabled,
        "consecutive_errors": source.consecutive_errors,
        "disabled_at": source.disabled_at,
        "disabled_reason": source.disabled_reason,
        "created_at": source.created_at,
        "disabled_notification_user_ids": source.disabled_notification_user_ids,
        "webhook_path": f"/webhooks/{source.id}",
    }


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A name people recognise.")],
    provider: Annotated[
        str, typer.Option(help=f"One of: {', '.join(sorted(PROVIDERS))}.")
    ] = "generic",
    secret: Annotated[
        str | None, typer.Option(help="The signing secret [default: a new one].")
    ] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option(help="A user (usr_…) to email if the source disables itself; repeatable."),
    ] = None,
    org: OrgOption = DEFAULT_ORG_ID,
) -> None:
    """Create a source and print its signing secret (shown once) and a curl example."""
    config = settings()
    with session_for(config) as session:
        check_users(session, org, notify or [])
        source, plain = create_source(
            session,
            secret_box(config),
            org_id=org,
            name=name,
            provider=provider,
            secret=secret,
            notify_user_ids=notify or [],
        )
    url = f"{receiver_url(config)}/webhooks/{source.id}"
    # Plain echo: a secret or a command is data; rich would eat brackets and wrap lines.
    typer.echo(f"source  {source.id}  ({provider})")
    typer.echo(f"url     {url}")
    typer.echo(f"secret  {plain}   (shown once; it is stored encrypted)")
    if provider != "generic":
        typer.echo(
            f"\nConfigure {provider} to send its webhooks to the url {PROVIDER_HINTS[provider]}."
        )
        return
    _print_try_it(config, url, plain)


def _print_try_it(config: Settings, url: str, secret: str) -> None:
    """A curl command that sends a signed test event as printed (signed now, so it fails
    loudly once stale), and the command that prints a freshly signed one later."""
    body = json.dumps({"type": "demo.ping", "timestamp": utcnow().isoformat(), "data": {}})
    valid = config.signature_tolerance_seconds
    typer.echo(f"\nSend a signed test event (signed now; accepted for {valid} seconds):")
    typer.echo(f"  {signed_curl(url, secret, body.encode())}")
    typer.echo("\nPrint a freshly signed one later:")
    resign = shlex.join(["sign", "--secret", secret, "--url", url, "--data", body])
    typer.echo(f"  {cli_command()} {resign}")


@app.command("list")
def list_(org: OrgOption = DEFAULT_ORG_ID, as_json: JsonOption = False) -> None:
    """List sources."""
    with session_for(settings()) as session:
        sources = list_sources(session, org)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([_as_dict(source) for source in sources])
        return
    print_table(
        f"sources {scope}",
        ["id", "name", "provider", "enabled", "errors in a row", "disabled at", "reason"],
        [
            (
                s.id,
                s.name,
                s.provider,
                s.enabled,
                s.consecutive_errors,
                when(s.disabled_at),
                s.disabled_reason,
            )
            for s in sources
        ],
    )


@app.command()
def show(source_id: str, org: AnyOrgOption = None, as_json: JsonOption = False) -> None:
    """Show one source (never its secret)."""
    with session_for(settings()) as session:
        source = find(session, Source, source_id, "source", org)
    data = _as_dict(source)
    if as_json:
        print_json(data)
        return
    print_fields(data)


@app.command()
def disable(
    source_id: str,
    reason: Annotated[str, typer.Option(help="Why; shown with the source.")] = "disabled by a user",
    org: AnyOrgOption = None,
) -> None:
    """Disable a source: its webhooks are still accepted and stored, but held."""
    with session_for(settings()) as session:
        disable_source(session, find(session, Source, source_id, "source", org), reason)
    console.print(f"{source_id} disabled; new events are stored and held")


@app.command()
def enable(source_id: str, org: AnyOrgOption = None) -> None:
    """Enable a source, reset its error count, and release its held events in the order
    they were received."""
    config = settings()
    with engine_for(config) as engine:
        enabled = enable_and_release(
            engine,
            lambda session: find(session, Source, source_id, "source", org),
            enqueue,
            now=utcnow(),
            grace_seconds=config.outbox_grace_seconds,
        )
    console.print(f"{source_id} enabled; {len(enabled.released)} held events released")
