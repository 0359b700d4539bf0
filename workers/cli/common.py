"""What every command needs: settings, a migrated database, and a way to say what went wrong."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.db import make_engine, transaction
from domain.errors import InvalidInput, NotFound
from domain.schema import NotMigrated, require_migrated
from domain.settings import Settings, SettingsError, load_settings
from workers.embedded import EmbeddedServerError, attach_process

console = Console()
errors = Console(stderr=True)


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
def session_for(config: Settings) -> Iterator[Session]:
    """A transaction on the migrated database; domain errors become clear exits."""
    engine = migrated_engine(config)
    try:
        with transaction(engine) as session:
            yield session
    except NotFound as exc:
        fail(str(exc))
    except (InvalidInput, SettingsError) as exc:
        fail(str(exc), code=2)
    finally:
        engine.dispose()


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) if cell is not None else "-" for cell in row))
    console.print(table)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
