"""A test environment: its own database, its own broker queue, its own data dir, and the
environment variables that give subprocesses the same configuration. The database and the
queue live on the run's session servers (``tests.support.servers``)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from domain.db import make_engine
from domain.schema import upgrade
from domain.secrets import generate_key
from domain.settings import Settings
from tests.support import handlers
from tests.support.servers import session_services

REPO = Path(__file__).resolve().parents[2]

#: Fast settings for tests: short waits everywhere, handlers from tests.support.handlers.
FAST = {
    "METERBRIDGE_RETRY_BASE_SECONDS": "0.2",
    "METERBRIDGE_RETRY_CAP_SECONDS": "1.0",
    "METERBRIDGE_RETRY_MAX_ATTEMPTS": "4",
    "METERBRIDGE_OUTBOX_GRACE_SECONDS": "2",
    "METERBRIDGE_SWEEP_INTERVAL_SECONDS": "1",
    "METERBRIDGE_HANDLER_MODULES": '["tests.support.handlers"]',
    "METERBRIDGE_LOG_FORMAT": "json",
}


@dataclass
class Environment:
    data_dir: Path
    env: dict[str, str]
    owned_database_url: str  # a database this environment created and drops
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        values: dict[str, Any] = {
            key.removeprefix("METERBRIDGE_").lower(): value
            for key, value in self.env.items()
            if key.startswith("METERBRIDGE_") and not key.startswith("METERBRIDGE_TEST_")
        }
        values["handler_modules"] = json.loads(values.get("handler_modules", "[]"))
        return Settings(_env_file=None, **values)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings)
        return self._engine

    def process_env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERBRIDGE_")}
        env.update(self.env)
        env.update(overrides)
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self.owned_database_url:
            drop_database(self.owned_database_url)


def make_env(tmp: Path, *, database_url: str | None = None, **overrides: Any) -> Environment:
    """``database_url``: a server the test runs itself; by default a fresh database on the
    session's server. ``overrides`` set any other setting (``broker_url=…``)."""
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    owned = database_url is None
    if database_url is None:
        database_url = create_database()
    env = {
        "METERBRIDGE_DATA_DIR": str(data_dir),
        "METERBRIDGE_SECRET_KEY": generate_key(),
        "METERBRIDGE_QUEUE": f"mbtest-{secrets.token_hex(4)}",
        "METERBRIDGE_DATABASE_URL": database_url,
        "METERBRIDGE_BROKER_URL": session_services().redis_url,
        **FAST,
    }
    env.update({f"METERBRIDGE_{k.upper()}": str(v) for k, v in overrides.items()})
    environment = Environment(data_dir, env, database_url if owned else "")
    environment.settings.ensure_dirs()
    upgrade(environment.engine)
    handlers.metadata.create_all(environment.engine)
    return environment


def _admin_engine() -> Engine:
    return sa.create_engine(
        make_url(session_services().database_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )


def create_database() -> str:
    """A new, empty database on the session's server."""
    name = f"mbtest_{secrets.token_hex(6)}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(session_services().database_url).set(database=name)
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
