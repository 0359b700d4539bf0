"""Fixtures of the CLI tests: a command run in-process, and what it queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.support.environment import Environment
from workers.cli.main import app

Cli = Callable[..., Result]


@pytest.fixture
def cli(env: Environment) -> Cli:
    """Runs a command in-process on the test environment; stdout is a pipe, not a TTY."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env.env, catch_exceptions=False)

    return run


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What commands queue; the broker of this process is not the test environment's."""
    sent: list[tuple[str, str]] = []

    def record(events: Any) -> int:
        sent.extend(events)
        return len(sent)

    monkeypatch.setattr("tasks.publish.enqueue", record)
    return sent
