"""The receiver against clients that never finish, send too much, or come in crowds: each
gets a JSON answer it can read and the connection closed, and the receiver keeps answering
everyone else."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.environment import Environment
from tests.support.processes import CLI, Stack
from tests.support.webhooks import new_source

LIMITS = {
    "METERBRIDGE_RECEIVER_HEADER_TIMEOUT_SECONDS": "1",
    "METERBRIDGE_RECEIVER_BODY_TIMEOUT_SECONDS": "1",
    "METERBRIDGE_RECEIVER_MAX_HEADER_BYTES": "4096",
    "METERBRIDGE_RECEIVER_MAX_CONNECTIONS": "8",
    "METERBRIDGE_RECEIVER_DOCS": "false",
    "METERBRIDGE_METRICS_TOKEN": "scrape-me",
}


@pytest.fixture
def receiver(stack: Stack) -> str:
    stack.start_receiver(**LIMITS)
    return stack.receiver_url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, str], float]:
    """Read until the server closes: status, headers, JSON body, seconds it took."""
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body), time.monotonic() - started


def _still_answers(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_headers_that_never_finish_get_408_within_the_header_timeout(receiver: str) -> None:
    # given a client that sends half a request line and stops (slowloris)
    with _connect(receiver) as sock:
        sock.sendall(b"POST /webhooks/src_x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # when the header timeout passes, then it is answered 408 in JSON and closed
        status, headers, body, waited = _answer(sock)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert body["code"] == "header_timeout"
    assert waited < 5
    assert _still_answers(receiver)


def test_a_connection_that_sends_nothing_gets_408_within_the_header_timeout(
    receiver: str,
) -> None:
    with _connect(receiver) as sock:
        status, _, body, waited = _answer(sock)
    assert status == 408
    assert body["code"] == "header_timeout"
    assert waited < 5


def test_a_keep_alive_connection_whose_next_request_stalls_gets_408(receiver: str) -> None:
    # given a connection that got a whole answer and was kept open
    with _connect(receiver) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(4096)
        # when its next request stops half-way through the headers
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, _, body, waited = _answer(sock)
    # then that request too is timed out
    assert status == 408
    assert body["code"] == "header_timeout"
    assert waited < 5


def test_headers_over_the_limit_get_431(receiver: str) -> None:
    with _connect(receiver) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024)
        status, _, body, _ = _answer(sock)
    assert status == 431
    assert body["code"] == "headers_too_large"
    assert _still_answers(receiver)


def test_a_body_that_stops_coming_gets_408(receiver: str, stack: Stack) -> None:
    # given a source whose webhook route waits for the whole body
    source_id, _ = new_source(stack.env)
    with _connect(receiver) as sock:
        sock.sendall(
            f"POST /webhooks/{source_id} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"type\": "
        )
        status, _, body, waited = _answer(sock)
    assert status == 408
    assert body["code"] == "body_timeout"
    assert waited < 5


def test_past_the_connection_cap_a_new_connection_gets_503_and_the_rest_are_served(
    receiver: str,
) -> None:
    # given as many idle connections as the receiver allows, all sending nothing
    idle = [_connect(receiver) for _ in range(8)]
    try:
        time.sleep(0.2)
        # when one more connects, then it is told to retry, and closed at once
        with _connect(receiver) as extra:
            status, headers, body, _ = _answer(extra)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert body["code"] == "too_many_connections"
    finally:
        for sock in idle:
            sock.close()
    # once they are gone, requests are served again
    time.sleep(0.2)
    assert _still_answers(receiver)


def test_a_malformed_request_gets_400_in_json(receiver: str) -> None:
    with _connect(receiver) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body, _ = _answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["code"] == "bad_http_request"


def test_docs_can_be_turned_off_and_metrics_need_their_token(receiver: str) -> None:
    assert httpx.get(f"{receiver}/docs").status_code == 404
    assert httpx.get(f"{receiver}/openapi.json").status_code == 404
    refused = httpx.get(f"{receiver}/metrics")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    wrong = httpx.get(f"{receiver}/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    scraped = httpx.get(f"{receiver}/metrics", headers={"authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200
    assert "meterbridge_webhooks_accepted_total" in scraped.text


def test_metrics_can_be_turned_off(stack: Stack) -> None:
    stack.start_receiver(METERBRIDGE_RECEIVER_METRICS="false")
    assert httpx.get(f"{stack.receiver_url}/metrics").status_code == 404


def test_a_connection_cap_the_open_files_limit_cannot_hold_stops_start_up(
    env: Environment, tmp_path: Path
) -> None:
    result = subprocess.run(
        ["bash", "-c", 'ulimit -n 256 && exec "$@"', "_", *CLI, "receiver"],
        env=env.process_env(METERBRIDGE_RECEIVER_MAX_CONNECTIONS="1000"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "METERBRIDGE_RECEIVER_MAX_CONNECTIONS=1000 needs 1128 open files" in " ".join(
        result.stderr.split()
    )


def test_flower_refuses_to_listen_beyond_loopback_without_credentials(
    env: Environment, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*CLI, "flower", "--address", "0.0.0.0"],  # noqa: S104 -- the case refused
        env=env.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "set FLOWER_BASIC_AUTH=user:password" in " ".join(result.stderr.split())
