"""``meterbridge dead-letters``: list and replay events that could not be processed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import Progress, TaskID

from domain.clock import utcnow
from domain.deadletters import (
    DeadLetterFilter,
    count_dead,
    list_dead,
    replay_dead_letters,
)
from domain.events import Event, EventStatus
from domain.organisations import DEFAULT_ORG_ID
from domain.settings import Settings
from workers.cli.common import (
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
    help="Dead letters: events that failed permanently or ran out of attempts.",
    no_args_is_help=True,
)

Source = Annotated[str | None, typer.Option("--source", help="Only this source id.")]
Type = Annotated[str | None, typer.Option("--type", help="Only this event type.")]
Error = Annotated[str | None, typer.Option("--error", help="Last error contains this text.")]
Since = Annotated[datetime | None, typer.Option(help="Died at or after (UTC).")]
Until = Annotated[datetime | None, typer.Option(help="Died before (UTC).")]
Org = Annotated[str, typer.Option("--org", help="Organisation id.")]
ReplayOrg = Annotated[
    str | None,
    typer.Option(
        "--org",
        help="Organisation the filters look in [default: the default one]. With an ID: "
        "only if the event belongs to it (an ID alone is found in any organisation).",
    ),
]


def _filter(
    org: str,
    ids: tuple[str, ...],
    source: str | None,
    type: str | None,
    error: str | None,
    since: datetime | None,
    until: datetime | None,
) -> DeadLetterFilter:
    def aware(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    return DeadLetterFilter(
        org,
        event_ids=ids,
        source_id=source,
        type=type,
        error_contains=error,
        since=aware(since),
        until=aware(until),
    )


@app.command("list")
def list_(
    source: Source = None,
    type: Type = None,
    error: Error = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    org: Org = DEFAULT_ORG_ID,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters, oldest first, with why they died."""
    filt = _filter(org, (), source, type, error, since, until)
    with session_for(settings()) as session:
        events = list_dead(session, filt, limit=limit)
        total = count_dead(session, filt)
        scope = "" if as_json else org_scope(session, org)
    if as_json:
        print_json([event.model_dump(exclude={"payload", "headers"}) for event in events])
        return
    print_table(
        f"dead letters {scope} ({len(events)} of {total})",
        ["id", "source", "type", "reason", "attempts", "died", "last error"],
        [
            (e.id, e.source_id, e.type, e.dead_reason, e.attempts, when(e.dead_at), e.last_error)
            for e in events
        ],
    )


def _in_event_org(
    config: Settings, filt: DeadLetterFilter, event_id: str, org: str | None
) -> DeadLetterFilter:
    """The filter moved to the event's own organisation (ids are unique across them).
    An event that is not dead has nothing to replay: say what it is and stop, successfully,
    as the README and the HTTP API promise."""
    with session_for(config) as session:
        event = find(session, Event, event_id, "event", org)
    if event.status != EventStatus.DEAD:
        console.print(
            f"{event_id} is not dead (status: {event.status}); nothing to replay",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(0)
    return replace(filt, org_id=event.org_id)


@app.command("replay")
def replay_(
    event_id: Annotated[str | None, typer.Argument(help="One event id; or use filters.")] = None,
    source: Source = None,
    type: Type = None,
    error: Error = None,
    since: Since = None,
    until: Until = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed.")
    ] = False,
    org: ReplayOrg = None,
) -> None:
    """Send dead letters back for processing. Their history is kept; replaying an event
    that is no longer dead does nothing."""
    scope = org or DEFAULT_ORG_ID
    filt = _filter(scope, (event_id,) if event_id else (), source, type, error, since, until)
    if filt == DeadLetterFilter(scope) and not all_:
        fail("name an event id or a filter, or pass --all", code=2)
    config = settings()
    if event_id:
        filt = _in_event_org(config, filt, event_id, org)
    with engine_for(config) as engine, _Bar() as bar:
        outcome = replay_dead_letters(
            engine,
            filt,
            enqueue,
            now=utcnow(),
            grace_seconds=config.outbox_grace_seconds,
            dry_run=dry_run,
            progress=bar,
        )
    if not outcome.matched and not outcome.replayed:
        fail("no dead letters match")
    if outcome.dry_run:
        events = outcome.would_replay
        print_table(
            f"would replay {outcome.matched}",
            ["id", "type", "reason", "last error"],
            [(e.id, e.type, e.dead_reason, e.last_error) for e in events],
        )
        if outcome.matched > len(events):
            console.print(f"... and {outcome.matched - len(events)} more")
        return
    console.print(f"replayed {len(outcome.replayed)} of {outcome.matched} dead letters")


class _Bar:
    """``ReplayProgress`` as a progress bar, drawn once the replay has counted: a short
    replay's bar goes when it ends, a long one's stays on screen."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, matched: int) -> None:
        self._progress = Progress(console=console, transient=matched < 100)
        self._progress.start()
        self._task = self._progress.add_task("replaying", total=matched)

    def advance(self, replayed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, replayed)
