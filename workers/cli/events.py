"""``meterbridge events``: read the event log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import Progress

from domain.eventlog import EventFilter, get_event, list_events
from domain.events import Event, EventStatus
from domain.organisations import DEFAULT_ORG_ID
from domain.subscriptions.rebuild import count_events, rebuild
from workers.cli.common import (
    AnyOrgOption,
    console,
    fail,
    find,
    org_scope,
    print_fields,
    print_json,
    print_table,
    session_for,
    settings,
    when,
)

app = typer.Typer(help="The event log: every webhook and internal change.", no_args_is_help=True)

OrgOption = Annotated[str, typer.Option("--org", help="Organisation id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def list_(
    status: Annotated[EventStatus | None, typer.Option(help="Only this status.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source id.")] = None,
    before: Annotated[str | None, typer.Option(help="Older than this event id (paging).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    org: OrgOption = DEFAULT_ORG_ID,
    as_json: JsonOption = False,
) -> None:
    """List events, newest first."""
    filt = EventFilter(org, status=status, type=type, source_id=source, before=before)
    with session_for(settings()) as session:
        events = list_events(session, filt, limit=limit)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([event.model_dump(exclude={"payload", "headers"}) for event in events])
        return
    print_table(
        f"events {scope} (newest first)",
        ["id", "source", "type", "status", "attempts", "received", "last error"],
        [
            (e.id, e.source_id, e.type, e.status, e.attempts, when(e.received_at), e.last_error)
            for e in events
        ],
    )


@app.command()
def show(event_id: str, org: AnyOrgOption = None, as_json: JsonOption = False) -> None:
    """Show one event: its envelope, payload and every processing attempt."""
    with session_for(settings()) as session:
        found = find(session, Event, event_id, "event", org)
        event, attempts = get_event(session, found.org_id, event_id)
    data = event.model_dump(exclude={"payload"})
    data["payload"] = json.loads(event.payload)
    data["history"] = [
        attempt.model_dump(exclude={"id", "event_id", "org_id"}) for attempt in attempts
    ]
    if as_json:
        print_json(data)
        return
    fields = (
        "id",
        "source_id",
        "provider",
        "type",
        "external_id",
        "status",
        "attempts",
        "replays",
        "occurred_at",
        "received_at",
        "next_attempt_at",
        "finished_at",
        "dead_at",
        "dead_reason",
        "last_error",
    )
    # Printed as they are: a stored "[redacted]" must not be read as rich markup.
    print_fields({key: data[key] for key in fields})
    print_fields(
        {"headers": json.dumps(event.headers), "payload": json.dumps(data["payload"])[:2000]}
    )
    print_table(
        "attempts",
        ["replay", "#", "started", "ms", "outcome", "error", "retry at", "task"],
        [
            (
                a.replay,
                a.number,
                when(a.started_at),
                a.duration_ms,
                a.outcome,
                a.error_message,
                when(a.retry_at),
                a.task_id,
            )
            for a in attempts
        ],
    )


@app.command()
def replay(
    rebuild_: Annotated[
        bool,
        typer.Option("--rebuild", help="Rebuild accounts and account plans from the log."),
    ] = False,
    org: OrgOption = DEFAULT_ORG_ID,
) -> None:
    """Replay the log. With --rebuild: re-apply every processed customer and subscription
    event, in one transaction, giving the accounts and account plans live processing
    reached (events that are dead are not part of it: replay those with dead-letters)."""
    if not rebuild_:
        fail(
            "say what to replay: --rebuild (dead letters: meterbridge dead-letters replay)", code=2
        )
    with session_for(settings()) as session:
        total = count_events(session, org)
        with Progress(console=console, transient=total < 100) as progress:
            task = progress.add_task("rebuilding", total=total)
            report = rebuild(session, org, on_event=lambda: progress.advance(task))
    console.print(
        f"rebuilt from {report.events} events: "
        f"{report.accounts} accounts, {report.plans} account plans"
    )
