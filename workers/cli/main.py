"""``meterbridge``: run the processes and operate the event log."""

from __future__ import annotations

import typer

from workers.cli import (
    credentials,
    deadletters,
    events,
    integrations,
    keys,
    orgs,
    run,
    sources,
    webhooks,
)

app = typer.Typer(
    name="meterbridge",
    help=(
        "Integration engine for usage-based billing: durable webhook intake, idempotent "
        "Celery processing, retries with backoff, dead letters and replay.\n\n"
        "Configuration comes from METERBRIDGE_* environment variables (or a .env file); "
        "with none set, everything runs embedded under ./.meterbridge."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
run.register(app)
app.add_typer(sources.app, name="sources")
app.add_typer(events.app, name="events")
app.add_typer(deadletters.app, name="dead-letters")
app.add_typer(keys.app, name="api-keys")
app.add_typer(orgs.orgs, name="orgs")
app.add_typer(orgs.users, name="users")
app.add_typer(integrations.app, name="integrations")
app.add_typer(credentials.app, name="credentials")
app.add_typer(webhooks.app, name="webhook-destinations")


def main() -> None:
    app()
