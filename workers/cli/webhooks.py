"""``meterbridge webhook-destinations``: where notification rules send signed webhooks,
what was tried, and how to send again.

The commands call the services the admin API calls (``domain.webhooks.operations`` and
the readers of ``domain.webhooks``); only finding the destination is the CLI's own, as
for every command that takes an id: it is found in any organisation (ids are unique
across them), or, with ``--org``, only in that one. So the command the disabled-destination
email gives, ``enable <id> --org <org>``, works as written, and so does ``enable <id>``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.organisations import DEFAULT_ORG_ID
from domain.webhooks.destinations import WebhookDestination, list_destinations
from domain.webhooks.messages import (
    REPLAY_LIMIT,
    MessageFilter,
    list_attempts,
    list_messages,
)
from domain.webhooks.operations import enable_and_release, replay
from workers.cli.common import (
    AnyOrgOption,
    console,
    engine_for,
    enqueue,
    fail,
    find,
    org_scope,
    print_json,
    print_table,
    session_for,
    settings,
    when,
)

app = typer.Typer(
    help=(
        "Webhook destinations: the URLs notification rules send signed webhooks to. "
        "List them, see every attempt, enable one that disabled itself (releasing what "
        "it held), and send failed messages again. Create, edit and rotate secrets with "
        "the admin API (/api/v1/webhook-destinations)."
    ),
    no_args_is_help=True,
)

Org = Annotated[str, typer.Option("--org", help="Organisation id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DestinationId = Annotated[str, typer.Argument(help="The destination's id (whd_…).")]
WHAT = "webhook destination"
#: Fields of a destination that are shown: never its secrets, even encrypted.
SHOWN = (
    "id",
    "org_id",
    "url",
    "description",
    "enabled",
    "consecutive_errors",
    "disabled_at",
    "disabled_reason",
    "disabled_notification_user_ids",
    "previous_secret_until",
    "created_at",
    "updated_at",
)
#: Failed messages a dry run lists one by one; beyond, it counts them.
DRY_RUN_SHOWN = 100


def _destination(session: Session, destination_id: str, org: str | None) -> WebhookDestination:
    return find(session, WebhookDestination, destination_id, WHAT, org)


def _owner(engine: Engine, destination_id: str, org: str | None) -> str:
    """The organisation of the destination (checked against ``--org`` when given)."""
    with Session(engine) as session:
        return _destination(session, destination_id, org).org_id


def _utc(value: datetime | None) -> datetime | None:
    """A time given without a zone is UTC."""
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


@app.command("list")
def list_(org: Org = DEFAULT_ORG_ID, as_json: JsonOption = False) -> None:
    """List an organisation's destinations and their state.

    Shows whether each is enabled, its failed messages in a row (the tenth disables
    it) and why it was disabled."""
    with session_for(settings()) as session:
        destinations = list_destinations(session, org)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([d.model_dump(include=set(SHOWN)) for d in destinations])
        return
    print_table(
        f"webhook destinations {scope}",
        ["id", "url", "enabled", "errors in a row", "disabled at", "reason"],
        [
            (
                d.id,
                d.url,
                d.enabled,
                d.consecutive_errors,
                when(d.disabled_at),
                d.disabled_reason,
            )
            for d in destinations
        ],
    )


@app.command()
def enable(destination_id: DestinationId, org: AnyOrgOption = None) -> None:
    """Enable a destination and send the messages it held.

    Its count of failures starts again, and the messages held while it was disabled
    are sent, oldest first. Failed messages stay failed: send them again with
    `replay`."""
    with engine_for(settings()) as engine:
        owner = _owner(engine, destination_id, org)
        enabled = enable_and_release(engine, owner, destination_id, enqueue)
    console.print(
        f"{destination_id} enabled; {len(enabled.released)} held messages released",
        markup=False,
        highlight=False,
    )


@app.command()
def attempts(
    destination_id: DestinationId,
    message: Annotated[
        str | None, typer.Option("--message", help="Only this message's attempts (msg_…).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most attempts shown.")] = 50,
    org: AnyOrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the attempts to send to a destination, newest first.

    Each shows when, the result, the status answered, how long it took, the address
    connected to, and why it failed or the first line of the answer (the API shows the
    first 1 KiB kept; so does --json)."""
    with session_for(settings()) as session:
        destination = _destination(session, destination_id, org)
        found = list_attempts(
            session, destination.org_id, destination.id, message_id=message, limit=limit
        )
    if as_json:
        print_json([attempt.model_dump() for attempt in found])
        return
    print_table(
        f"attempts to {destination_id} ({destination.url}), newest first ({len(found)})",
        ["attempt", "message", "#", "at", "result", "status", "ms", "address", "error or answer"],
        [
            (
                a.id,
                a.message_id,
                a.number,
                when(a.attempted_at),
                a.result,
                a.status_code,
                a.duration_ms,
                a.address,
                a.error or _first_line(a.answer),
            )
            for a in found
        ],
    )


def _first_line(answer: str, chars: int = 120) -> str | None:
    line = answer.strip().splitlines()[0] if answer.strip() else ""
    return (line[:chars] + "…" if len(line) > chars else line) or None


@app.command("replay")
def replay_(
    destination_id: DestinationId,
    message: Annotated[
        list[str] | None,
        typer.Option("--message", help="A failed message to send again (msg_…); repeatable."),
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--event-type", help="Only messages of this event type.")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only messages created at or after (UTC).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only messages created before (UTC).")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every failed message of the destination.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show which messages would be sent again.")
    ] = False,
    org: AnyOrgOption = None,
) -> None:
    """Send a destination's failed messages again.

    Name them with --message, select them with filters, or pass --all (at most 10,000
    per run); with none of these it refuses. Each is sent with the body and webhook-id
    it had, so a receiver that took it before can drop it. Only failed messages are
    sent: delivered, pending and held ones are left alone. --dry-run only lists them."""
    if not (message or event_type or since or until or all_):
        fail("name a message with --message, or a filter, or pass --all", code=2)
    with engine_for(settings()) as engine:
        filt = MessageFilter(
            _owner(engine, destination_id, org),
            destination_id,
            event_type=event_type,
            since=_utc(since),
            until=_utc(until),
            message_ids=list(message) if message else None,
        )
        with console.status("replaying" if not dry_run else "counting"):
            replayed = replay(engine, filt, dry_run=dry_run, publish=enqueue)
        if not replayed.message_ids:
            fail("no failed messages match")
        if dry_run:
            _print_would_replay(engine, filt, replayed.message_ids)
    if not dry_run:
        console.print(f"replayed {len(replayed.message_ids)} failed messages", highlight=False)
    if len(replayed.message_ids) == REPLAY_LIMIT:
        console.print(
            f"(at most {REPLAY_LIMIT:,} per run: run it again for the rest)", highlight=False
        )


def _print_would_replay(engine: Engine, filt: MessageFilter, ids: list[str]) -> None:
    shown = ids[:DRY_RUN_SHOWN]
    with Session(engine) as session:
        by_id = {
            m.id: m
            for m in list_messages(
                session,
                MessageFilter(filt.org_id, filt.destination_id, message_ids=shown),
                limit=len(shown),
            )
        }
    print_table(
        f"would replay {len(ids)} failed messages",
        ["message", "event type", "attempts", "failed at", "last error"],
        [
            (i, m.event_type, m.attempts, when(m.failed_at), m.last_error)
            for i in shown
            if (m := by_id.get(i)) is not None
        ],
    )
    if len(ids) > len(shown):
        console.print(f"... and {len(ids) - len(shown)} more", highlight=False)
