"""The life of a data dir's embedded servers: shared by every process attached to them,
stopped by the last, never left behind by one that was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from domain.settings import Settings
from tests.support.embedded import clean_env, cli, processes_using
from tests.support.environment import REPO
from workers.embedded import EmbeddedServerError, EmbeddedServers
from workers.embedded.system_user import ServerUser

ATTACH_AND_WAIT = (
    "import sys, time; from domain.settings import load_settings; "
    "from workers.embedded import attach_process; "
    "attach_process(load_settings()); print('attached', flush=True); time.sleep(120)"
)


def test_servers_a_killed_user_left_running_are_adopted_then_stopped(
    embedded_data_dir: Path,
) -> None:
    data_dir = embedded_data_dir
    # given a process attached to the servers, then killed with SIGKILL (no atexit)
    user = subprocess.Popen(
        [sys.executable, "-c", ATTACH_AND_WAIT],
        env=clean_env(data_dir),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert user.stdout is not None
    assert user.stdout.readline().strip() == "attached"
    user.send_signal(signal.SIGKILL)
    user.wait(timeout=10)
    servers = EmbeddedServers(Settings(_env_file=None, data_dir=data_dir))
    assert servers.postgres is not None
    assert servers.postgres.running()
    assert servers.redis is not None
    assert servers.redis.running()

    # when another process attaches (nothing to start) and is the last to detach
    assert servers.attach(os.getpid()) == []
    assert servers.users() == {os.getpid()}
    assert servers.detach(os.getpid()) is True

    # then both servers are stopped
    assert processes_using(data_dir) == []


def test_commands_started_together_on_a_fresh_data_dir_share_one_start(
    embedded_data_dir: Path,
) -> None:
    data_dir = embedded_data_dir
    # given four commands started at once on a data dir with no servers and no cluster
    env = clean_env(data_dir)
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "sources", "list", "--json"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    # when they finish
    results = [command.communicate(timeout=120) for command in commands]
    # then each one answered, and the last to finish stopped the servers
    assert [command.returncode for command in commands] == [0] * 4, results
    assert all(stdout.strip() == "[]" for stdout, _ in results), results
    assert processes_using(data_dir) == []
    assert cli(env, "sources", "list", "--json").stdout.strip() == "[]"


def test_a_socket_dir_another_user_made_first_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a data dir too deep for a socket, whose fixed-name socket dir in /tmp exists
    settings = Settings(_env_file=None, data_dir=tmp_path.joinpath(*["deep-directory"] * 8))
    settings.socket_dir.mkdir(exist_ok=True)
    try:
        # when it belongs to someone who is neither this process nor the server's user
        owner = settings.socket_dir.stat().st_uid
        monkeypatch.setattr("workers.embedded.servers.os.geteuid", lambda: owner + 1)
        monkeypatch.setattr("workers.embedded.servers.server_user", lambda: ServerUser())
        # then attaching refuses, naming it, and starts nothing
        with pytest.raises(EmbeddedServerError, match="belongs to another user"):
            EmbeddedServers(settings).attach(os.getpid())
        assert not (settings.data_dir / "postgres").exists()
    finally:
        settings.socket_dir.rmdir()


@pytest.mark.parametrize(
    ("urls", "embedded"),
    [
        ({}, {"postgres", "redis"}),
        ({"database_url": "postgresql://db/mb", "broker_url": "redis://r/0"}, set()),
        # RabbitMQ queues the work; the rate limits still need a Redis: the data dir's
        ({"database_url": "postgresql://db/mb", "broker_url": "amqp://rabbit//"}, {"redis"}),
        (
            {
                "database_url": "postgresql://db/mb",
                "broker_url": "amqp://rabbit//",
                "redis_url": "redis://r/1",
            },
            set(),
        ),
    ],
)
def test_what_is_embedded_follows_the_urls(
    tmp_path: Path, urls: dict[str, str], embedded: set[str]
) -> None:
    servers = EmbeddedServers(Settings(_env_file=None, data_dir=tmp_path, **urls))
    running = {"postgres"} if servers.postgres else set()
    assert running | ({"redis"} if servers.redis else set()) == embedded
    assert servers.needed == bool(embedded)


def test_a_parent_that_lost_search_permission_does_not_make_a_live_server_look_stopped(
    embedded_data_dir: Path,
) -> None:
    # given servers running for a data dir (as root, PostgreSQL runs as its own user)
    servers = EmbeddedServers(Settings(_env_file=None, data_dir=embedded_data_dir))
    assert servers.postgres is not None
    servers.attach(os.getpid())
    try:
        # when a parent directory loses search permission for others (pytest resets its
        # temp root to 0700 whenever a session starts)
        parent = embedded_data_dir.parent
        parent.chmod(0o700)

        # then the server is still seen running, and attaching starts nothing
        assert servers.postgres.running()
        assert servers.attach(os.getpid()) == []
    finally:
        servers.detach(os.getpid())
    assert processes_using(embedded_data_dir) == []
