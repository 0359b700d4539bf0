"""The CLI's surface: every command explains itself, and every process that compose.yaml
and the Procfile start is a real command with real options."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from workers.cli.main import app

REPO = Path(__file__).resolve().parents[2]
ROOT = typer.main.get_command(app)
runner = CliRunner()


def commands(group: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if _is_group(group):
        for name, command in group.commands.items():
            found += commands(command, (*path, name))
    return found


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer ships its own click; no isinstance


def resolve(argv: list[str]) -> tuple[Any, list[str]]:
    """The command an argv names, and the rest of the argv."""
    command: Any = ROOT
    rest = list(argv)
    while _is_group(command) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p) or "meterbridge")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    command, _ = resolve(list(path))
    assert command.help, f"{' '.join(path)} has no help text"


EXPECTED = {
    "spine": {
        "dev",
        "receiver",
        "worker",
        "beat",
        "flower",
        "migrate",
        "sources create",
        "sources list",
        "sources show",
        "sources disable",
        "sources enable",
        "events list",
        "events show",
        "dead-letters list",
        "dead-letters replay",
    }
}


def test_the_commands_the_issue_asks_for_exist() -> None:
    present = {" ".join(path) for path in commands()}
    assert EXPECTED["spine"] <= present


def assert_real_command(argv: list[str], where: str) -> None:
    assert argv[0] == "meterbridge", where
    command, rest = resolve(argv[1:])
    assert not _is_group(command), f"{where}: {argv} is not a command"
    options = {opt for param in command.params for opt in param.opts}
    for token in rest:
        if token.startswith("--"):
            assert token.split("=")[0] in options, f"{where}: {command.name} has no {token}"
    assert runner.invoke(app, [*argv[1 : 1 + len(argv) - 1 - len(rest)], "--help"]).exit_code == 0


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_compose_is_valid_yaml_and_runs_real_commands() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "mailpit", "receiver", "worker", "beat", "flower"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if isinstance(command, list) and command[0] == "meterbridge":
            assert_real_command(command, f"compose service {name}")
        if name != "migrate":
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_compose_wires_every_meterbridge_process_to_postgres_redis_and_mailpit() -> None:
    services = compose()["services"]
    for name in ("receiver", "worker", "beat", "flower", "migrate"):
        env = services[name]["environment"]
        assert env["METERBRIDGE_DATABASE_URL"].startswith("postgresql://")
        assert env["METERBRIDGE_BROKER_URL"].startswith("redis://redis:")
        assert env["METERBRIDGE_SMTP_URL"] == "smtp://mailpit:1025"


def test_procfile_runs_real_commands() -> None:
    roles = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            role, command = line.split(":", 1)
            roles[role] = shlex.split(command)
    assert {"web", "worker", "beat", "flower"} <= set(roles)
    for role, argv in roles.items():
        assert_real_command([a for a in argv if not a.startswith("${")], f"Procfile {role}")
