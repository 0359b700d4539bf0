"""What every command needs: settings, a migrated database, and a way to say what went wrong."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.db import make_engine, transaction
from domain.errors import InvalidInput, NotFound
from domain.organisations import list_organisations
from domain.providers.generic import sign as sign_generic
from domain.schema import NotMigrated, require_migrated
from domain.settings import Settings, SettingsError, load_settings
from workers.embedded import EmbeddedServerError, attach_process
from workers.embedded.process import alive

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # a message is never folded mid-word

#: Width for tables written to a pipe or a file: wide enough that no row is folded.
UNWRAPPED_WIDTH = 100_000


#: ``--org`` of a command that takes an id: ids are unique across organisations, so the
#: object is found in any of them unless this names one.
AnyOrgOption = Annotated[
    str | None, typer.Option("--org", help="Only if it belongs to this organisation.")
]


class Owned(Protocol):
    org_id: str


T = TypeVar("T", bound=Owned)


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), code=2)


def use_embedded_servers(config: Settings) -> list[str]:
    """With no database or broker URL, attach this command to the embedded PostgreSQL and
    Redis of the data dir (starting them if none run) until it exits. Returns what it
    started."""
    try:
        return attach_process(config)
    except (EmbeddedServerError, OSError, subprocess.CalledProcessError) as exc:
        fail(f"cannot start the embedded servers in {config.data_dir.resolve()}: {exc}")


def migrated_engine(config: Settings) -> Engine:
    use_embedded_servers(config)
    engine = make_engine(config)
    try:
        require_migrated(engine)
    except NotMigrated as exc:
        fail(str(exc))
    except Exception as exc:  # the database does not answer
        fail(f"cannot reach the database: {type(exc).__name__}: {exc}")
    return engine


@contextmanager
def engine_for(config: Settings) -> Iterator[Engine]:
    """The migrated database, for a service that owns its transactions; domain errors
    become clear exits."""
    engine = migrated_engine(config)
    try:
        yield engine
    except NotFound as exc:
        fail(str(exc))
    except (InvalidInput, SettingsError) as exc:
        fail(str(exc), code=2)
    finally:
        engine.dispose()


@contextmanager
def session_for(config: Settings) -> Iterator[Session]:
    """A transaction on the migrated database; domain errors become clear exits."""
    with engine_for(config) as engine, transaction(engine) as session:
        yield session


def enqueue(events: Iterable[tuple[str, str]]) -> int:
    """``domain.routing.Publish`` for commands: ``tasks.publish.enqueue``, imported when
    first used, so that commands that publish nothing never load Celery."""
    from tasks import publish

    return publish.enqueue(events)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def find(session: Session, model: type[T], object_id: str, what: str, org: str | None) -> T:
    """The object with this id in any organisation (ids are unique across them): the CLI
    operates the whole installation. With ``org``, only if it belongs to that one."""
    found = session.get(model, object_id)
    if found is None or (org is not None and found.org_id != org):
        raise NotFound(f"no {what} {object_id!r}" + (f" in {org}" if org else ""))
    return found


def org_scope(session: Session, org: str) -> str:
    """How a list command's title names its organisation. Any other organisations are
    named on stderr, so a list that looks empty says where else to look."""
    others = [f"{o.id} ({o.name})" for o in list_organisations(session) if o.id != org]
    if others:
        errors.print(
            f"other organisations: {', '.join(others)}; list theirs with --org ID",
            markup=False,
            highlight=False,
        )
    return f"in {org}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not str: a cell such as "[redacted]" is data, not rich markup.
        table.add_row(*(Text(str(cell) if cell is not None else "-") for cell in row))
    # The title on a line of its own: a table's own title folds to the table's width.
    output = console if console.is_terminal else Console(width=UNWRAPPED_WIDTH)
    output.print(title, markup=False, highlight=False, soft_wrap=True)
    # Piped to grep or a file: whole rows, not rows folded at 80 columns.
    output.print(table)


def print_fields(data: dict[str, Any], width: int = 16) -> None:
    """One ``key value`` line each, printed as they are (no markup, no wrapping)."""
    for key, value in data.items():
        typer.echo(f"{key:{width}} {value if value is not None else '-'}")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def receiver_url(config: Settings) -> str:
    """Where the receiver answers: the URL a running ``meterbridge dev`` wrote to
    ``<data dir>/run/dev.json`` (its port may differ from the configured one), else the
    configured host and port."""
    configured = f"http://{config.receiver_host}:{config.receiver_port}"
    try:
        dev = json.loads((config.data_dir / "run" / "dev.json").read_text())
        pid, url = int(dev["pid"]), str(dev["receiver_url"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, or half written
        return configured
    return url if alive(pid) else configured


def cli_command() -> str:
    """This CLI as a shell command that works from any directory and without
    ``meterbridge`` on PATH: the absolute path of the script running, else
    ``python -m workers.cli`` with this interpreter."""
    script = Path(sys.argv[0])
    if script.name != "__main__.py" and script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script.resolve()))
    return f"{shlex.quote(sys.executable)} -m workers.cli"


def signed_curl(
    url: str, secret: str, body: bytes, msg_id: str | None = None, timestamp: int | None = None
) -> str:
    """A curl command posting ``body`` to ``url`` signed as a Standard Webhooks sender,
    shell-quoted throughout. ``--fail-with-body`` makes a refused webhook exit non-zero
    while still showing why."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_generic(secret, msg_id, timestamp, body),
    }
    parts = ["curl", "-sS", "--fail-with-body", "-X", "POST", url]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    return shlex.join([*parts, "--data-binary", body.decode()])
