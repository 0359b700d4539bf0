from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import kombu
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from domain.settings import Settings
from tests.support.environment import Environment, make_env
from tests.support.fake_chargebee import FakeChargebee
from tests.support.processes import Stack
from tests.support.servers import stop_session_services
from tests.support.smtp import SmtpServer
from workers.embedded import EmbeddedServers

#: CI sets this so that a test which would skip for a missing service fails instead.
REQUIRE_ALL = os.environ.get("METERBRIDGE_TEST_REQUIRE_ALL") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Real services named by the environment must answer, or the run stops at once."""
    problems = services_not_answering()
    if problems:
        pytest.exit("test services do not answer:\n  " + "\n  ".join(problems), returncode=3)


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_session_services()


def services_not_answering() -> list[str]:
    problems = []
    checks = {
        "METERBRIDGE_TEST_DATABASE_URL": _database_answers,
        "METERBRIDGE_TEST_REDIS_URL": _broker_answers,
        "METERBRIDGE_TEST_AMQP_URL": _broker_answers,
    }
    for variable, check in checks.items():
        url = os.environ.get(variable)
        if url:
            try:
                check(url)
            except Exception as exc:
                problems.append(f"{variable}={url}: {type(exc).__name__}: {exc}")
    return problems


def _database_answers(url: str) -> None:
    engine = sa.create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def _broker_answers(url: str) -> None:
    with kombu.Connection(url, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1, timeout=5)


@pytest.fixture
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh data dir for a test of the embedded default; its PostgreSQL and Redis are
    stopped at the end whatever happened (they run in sessions of their own, so a failed
    test would leave them behind)."""
    path = tmp_path / "data"
    yield path
    EmbeddedServers(Settings(_env_file=None, data_dir=path)).stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Environment]:
    environment = make_env(tmp_path)
    yield environment
    environment.close()


@pytest.fixture
def stack(env: Environment, tmp_path: Path) -> Iterator[Stack]:
    """An empty stack for a test that starts its own processes."""
    processes = Stack(env, tmp_path)
    yield processes
    processes.close()


@pytest.fixture(scope="session")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    environment = make_env(tmp_path_factory.mktemp("shared"))
    yield environment
    environment.close()


@pytest.fixture(scope="session")
def fake_chargebee() -> Iterator[FakeChargebee]:
    server = FakeChargebee(hang_seconds=4).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def outside_env(fake: FakeChargebee, smtp: SmtpServer) -> dict[str, str]:
    """What every worker of the shared stack reaches outside: the fake Chargebee and the
    test SMTP server, with short timeouts."""
    return {
        "METERBRIDGE_CHARGEBEE_URL_TEMPLATE": fake.url_template,
        "METERBRIDGE_HTTP_TIMEOUT_SECONDS": "1.5",
        "METERBRIDGE_SMTP_URL": smtp.url,
        "METERBRIDGE_SMTP_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture(scope="session")
def running(
    shared_env: Environment,
    fake_chargebee: FakeChargebee,
    smtp_server: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Receiver, worker and beat on the shared environment (workers talking to the fake
    Chargebee), for tests that only need a working system and make their own objects."""
    processes = Stack(shared_env, tmp_path_factory.mktemp("shared-logs"))
    try:
        with processes.side_by_side():
            processes.start_receiver()
            processes.start_worker(**outside_env(fake_chargebee, smtp_server))
            processes.start_beat()
        yield processes
    finally:
        processes.close()
