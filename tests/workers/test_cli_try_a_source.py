"""`meterbridge sources create` prints the receiver's real URL and commands that work
exactly as printed: from any directory, without `meterbridge` on PATH."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from domain.settings import Settings
from tests.support.environment import Environment
from workers.cli.common import cli_command, receiver_url

METERBRIDGE = Path(sys.executable).parent / "meterbridge"
#: What a newcomer's shell has: no virtualenv on PATH.
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeReceiver:
    """Stands in for the receiver: records each POST and answers ``status``."""

    url: str = ""
    status: int = 202
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def fake_receiver() -> Iterator[FakeReceiver]:
    fake = FakeReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {name.lower(): value for name, value in self.headers.items()}
            fake.requests.append(Received(self.path, headers, body))
            self.send_response(fake.status)
            self.end_headers()
            self.wfile.write(b'{"code": "refused", "message": "as the test asked"}')

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    yield fake
    server.shutdown()
    server.server_close()


def write_dev_file(data_dir: Path, pid: int, url: str) -> None:
    """What a running `meterbridge dev` leaves in the data dir."""
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    (data_dir / "run" / "dev.json").write_text(json.dumps({"pid": pid, "receiver_url": url}))


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def shell(line: str, env: Environment, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", line],
        cwd=cwd,
        env=env.process_env(PATH=BARE_PATH),
        capture_output=True,
        text=True,
        timeout=60,
    )


def printed_line(output: str, starts_with: str) -> str:
    return next(
        line.strip() for line in output.splitlines() if line.strip().startswith(starts_with)
    )


def test_sources_create_prints_commands_that_send_a_signed_event_as_printed(
    env: Environment, fake_receiver: FakeReceiver, tmp_path: Path
) -> None:
    # given `meterbridge dev` runs its receiver on a port other than the configured one
    write_dev_file(env.data_dir, os.getpid(), fake_receiver.url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # when a newcomer runs the venv's script by its path, from another directory
    created = shell(f"{METERBRIDGE} sources create demo", env, elsewhere)

    # then the url is the running receiver's
    assert created.returncode == 0, created.stderr
    url = printed_line(created.stdout, "url").split()[1]
    assert url.startswith(f"{fake_receiver.url}/webhooks/src_")
    secret = printed_line(created.stdout, "secret").split()[1]

    # and the curl line sends a correctly signed event, as printed
    sent = shell(printed_line(created.stdout, "curl "), env, elsewhere)
    assert sent.returncode == 0, sent.stderr
    # and the command for a fresh signature works too, without meterbridge on PATH
    resigned = shell(printed_line(created.stdout, str(METERBRIDGE)), env, elsewhere)
    assert resigned.returncode == 0, resigned.stderr
    assert shell(resigned.stdout.strip(), env, elsewhere).returncode == 0

    assert len(fake_receiver.requests) == 2
    for request in fake_receiver.requests:
        assert request.path == url.removeprefix(fake_receiver.url)
        Webhook(secret).verify(request.body, request.headers)  # raises if badly signed


def test_the_printed_curl_fails_loudly_when_the_receiver_refuses_it(
    env: Environment, fake_receiver: FakeReceiver, tmp_path: Path
) -> None:
    # given a receiver that refuses the webhook (as it does a stale signature)
    write_dev_file(env.data_dir, os.getpid(), fake_receiver.url)
    fake_receiver.status = 401
    created = shell(f"{METERBRIDGE} sources create demo", env, tmp_path)
    assert created.returncode == 0, created.stderr

    # when the printed curl line is run
    sent = shell(printed_line(created.stdout, "curl "), env, tmp_path)

    # then it exits non-zero and shows why, instead of succeeding quietly
    assert sent.returncode != 0
    assert "refused" in sent.stdout


def settings_in(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, receiver_port=8123)  # type: ignore[call-arg]


def test_receiver_url_is_the_configured_one_without_a_dev_file(tmp_path: Path) -> None:
    assert receiver_url(settings_in(tmp_path)) == "http://127.0.0.1:8123"


def test_receiver_url_is_the_running_devs(tmp_path: Path) -> None:
    write_dev_file(tmp_path, os.getpid(), "http://127.0.0.1:9001")
    assert receiver_url(settings_in(tmp_path)) == "http://127.0.0.1:9001"


def test_receiver_url_ignores_the_dev_file_of_a_dev_that_is_gone(tmp_path: Path) -> None:
    write_dev_file(tmp_path, dead_pid(), "http://127.0.0.1:9001")
    assert receiver_url(settings_in(tmp_path)) == "http://127.0.0.1:8123"


def test_receiver_url_ignores_a_half_written_dev_file(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "dev.json").write_text('{"pid": ')
    assert receiver_url(settings_in(tmp_path)) == "http://127.0.0.1:8123"


def test_cli_command_run_as_a_module_is_this_interpreter_with_dash_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given `python -m workers.cli`, whose argv[0] is a __main__.py that cannot run alone
    main = Path(__file__).resolve().parents[2] / "workers" / "cli" / "__main__.py"
    monkeypatch.setattr(sys, "argv", [str(main), "sources", "create", "demo"])

    # then the command names the interpreter, which works from any directory
    assert cli_command() == f"{shlex.quote(sys.executable)} -m workers.cli"
