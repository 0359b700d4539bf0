"""`meterbridge dev` as a newcomer meets it: no URL set, the embedded PostgreSQL and Redis
under the data dir, other commands beside it, and Ctrl-C leaving nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.embedded import clean_env, cli, processes_using, session_members
from tests.support.processes import CLI, Proc, free_port, wait_for
from tests.support.webhooks import signed_headers


def _ready(url: str, dev: Proc) -> bool:
    if dev.popen.poll() is not None:
        raise AssertionError(f"dev exited ({dev.popen.returncode}):\n{dev.log()[-3000:]}")
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _event_status(env: dict[str, str], event_id: str) -> str:
    shown = cli(env, "events", "show", event_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["status"])


@pytest.mark.timeout(300)
def test_dev_runs_the_embedded_stack_and_ctrl_c_leaves_nothing_running(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    # given a data dir and no URL: a fresh machine
    data_dir = embedded_data_dir
    env = clean_env(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dev = Proc("dev", [*CLI, "dev", "--port", str(port)], env, tmp_path / "dev.log")
    try:
        wait_for(lambda: _ready(url, dev), timeout=120, what="dev's receiver /readyz")
        servers = processes_using(data_dir)
        assert any("postgres" in line for line in servers), servers
        assert any("redis-server" in line for line in servers), servers

        # a second dev on the same data dir is refused, naming the first
        second = cli(env, "dev", "--port", str(free_port()))
        assert second.returncode == 1
        refusal = " ".join(second.stderr.split())
        assert "another `meterbridge dev` is running" in refusal
        assert f"pid {dev.pid}" in refusal
        assert url in refusal

        # another command finds the running servers; the URL it prints is dev's
        created = cli(env, "sources", "create", "demo")
        assert created.returncode == 0, created.stderr
        assert f"{url}/webhooks/src_" in created.stdout
        source_id = re.search(r"src_[0-9A-Z]+", created.stdout).group(0)  # type: ignore[union-attr]
        secret = re.search(r"whsec_\S+", created.stdout).group(0)  # type: ignore[union-attr]

        # a webhook goes through receiver, broker and worker
        body = b'{"type": "demo.ping"}'
        answer = httpx.post(
            f"{url}/webhooks/{source_id}",
            content=body,
            headers=signed_headers(secret, body, f"msg_{uuid.uuid4().hex}"),
        )
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        wait_for(lambda: _event_status(env, event_id) == "ignored", timeout=60, what="processed")
        assert processes_using(data_dir), "the command stopped the servers dev uses"

        # when: Ctrl-C
        members = session_members(dev.pid)
        os.kill(dev.pid, signal.SIGINT)
        assert dev.popen.wait(timeout=90) == 0, dev.log()[-3000:]

        # then nothing dev started runs on: children, PostgreSQL, Redis
        wait_for(lambda: not processes_using(data_dir), timeout=10, what="servers to stop")
        assert [pid for pid in members if pid in session_members(dev.pid)] == []
        assert "stopped the embedded PostgreSQL and Redis" in dev.log()
    finally:
        dev.stop()

    # the data persists, and a command with no dev starts the servers, then stops them
    assert _event_status(env, event_id) == "ignored"
    assert processes_using(data_dir) == []
