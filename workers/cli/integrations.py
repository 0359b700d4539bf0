"""``meterbridge integrations``: outbound integration configs and their runs."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.integrations.configs import IntegrationConfig, list_configs
from domain.integrations.enable import enable_and_release
from domain.integrations.runs import (
    RunFilter,
    disable_config,
    list_runs,
)
from domain.organisations import DEFAULT_ORG_ID
from workers.cli.common import (
    AnyOrgOption,
    console,
    engine_for,
    enqueue,
    find,
    org_scope,
    print_fields,
    print_json,
    print_table,
    session_for,
    settings,
    when,
)

app = typer.Typer(help="Integration configs: where approved bills go.", no_args_is_help=True)

Org = Annotated[str, typer.Option("--org", help="Organisation id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
WHAT = "integration config"


@app.command("list")
def list_(org: Org = DEFAULT_ORG_ID, as_json: JsonOption = False) -> None:
    """List configs with their state: enabled, connected, successive errors."""
    with session_for(settings()) as session:
        configs = list_configs(session, org)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([config.model_dump() for config in configs])
        return
    print_table(
        f"integrations {scope}",
        [
            "id",
            "name",
            "destination",
            "enabled",
            "connected",
            "errors in a row",
            "disabled at",
            "reason",
        ],
        [
            (
                c.id,
                c.name,
                c.destination,
                c.enabled,
                c.connected,
                c.consecutive_errors,
                when(c.disabled_at),
                c.disabled_reason,
            )
            for c in configs
        ],
    )


@app.command()
def show(config_id: str, org: AnyOrgOption = None, as_json: JsonOption = False) -> None:
    """Show a config, its options and its latest runs."""
    with session_for(settings()) as session:
        config = find(session, IntegrationConfig, config_id, WHAT, org)
        runs = list_runs(session, RunFilter(config.org_id, config_id=config_id), limit=20)
    data = config.model_dump()
    data["connected"] = config.connected
    if as_json:
        data["runs"] = [run.model_dump() for run in runs]
        print_json(data)
        return
    print_fields(data, width=32)
    print_table(
        "latest runs",
        ["run", "bill", "status", "added", "removed", "error", "created"],
        [
            (
                r.id,
                r.bill_id,
                r.status,
                r.items_added,
                r.items_removed,
                r.error_message,
                when(r.created_at),
            )
            for r in runs
        ],
    )


@app.command()
def disable(
    config_id: str,
    reason: Annotated[str, typer.Option(help="Why; shown with the config.")] = "disabled by a user",
    org: AnyOrgOption = None,
) -> None:
    """Disable a config: its runs are recorded as DISABLED and held, not sent."""
    with session_for(settings()) as session:
        disable_config(session, find(session, IntegrationConfig, config_id, WHAT, org), reason)
    console.print(f"{config_id} disabled; its runs are held")


@app.command()
def enable(config_id: str, org: AnyOrgOption = None) -> None:
    """Enable a config, reset its error count, and release its held runs in order."""
    with engine_for(settings()) as engine:
        enabled = enable_and_release(
            engine, lambda session: find(session, IntegrationConfig, config_id, WHAT, org), enqueue
        )
    console.print(f"{config_id} enabled; {len(enabled.released)} held runs released")
