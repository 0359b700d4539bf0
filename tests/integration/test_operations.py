"""What an operator sees and runs: Flower, worker metrics, logs, `meterbridge dev`, refusal
to start on an unmigrated database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from domain import routing
from domain.events import Event, EventStatus
from domain.secrets import generate_key
from tests.integration.test_pipeline import wait_final
from tests.support.environment import REPO, Environment, create_database, drop_database
from tests.support.processes import CLI, Proc, Stack, free_port, wait_for
from tests.support.servers import session_services
from tests.support.webhooks import new_source, send


def test_flower_shows_the_task_with_its_event_id(running: Stack) -> None:
    env = running.env
    port = free_port()
    flower = Proc(
        "flower",
        [*CLI, "flower", "--port", str(port)],
        env.process_env(FLOWER_UNAUTHENTICATED_API="true"),
        running.logs / "flower.log",
    )
    try:
        api = f"http://127.0.0.1:{port}/api"
        wait_for(lambda: _get(f"{api}/workers?refresh=1"), timeout=60, what="flower's API")
        source_id, secret = new_source(env)
        with httpx.Client() as client:
            event_id = send(client, running.receiver_url, source_id, secret, "test.effect").json()[
                "event_id"
            ]
        wait_final(env, event_id)

        def task_in_flower() -> dict | None:
            tasks = _get(f"{api}/tasks?taskname={routing.PROCESS_EVENT_TASK}") or {}
            return next((t for t in tasks.values() if event_id in (t.get("args") or "")), None)

        task = wait_for(task_in_flower, timeout=30, what="the task in Flower")
        assert task["name"] == routing.PROCESS_EVENT_TASK
        assert task["state"] == "SUCCESS"
        info = _get(f"{api}/task/info/{task['uuid']}")
        assert info is not None
        assert event_id in info["args"]
        assert info["worker"]
        workers = _get(f"{api}/workers")
        assert workers
    finally:
        flower.stop()


def _get(url: str) -> dict | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def worker_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def events_of(env: Environment, event_type: str) -> list[str]:
    with Session(env.engine) as session:
        return list(session.exec(select(Event.id).where(Event.type == event_type)).all())


def test_a_worker_serves_the_summed_metrics_of_its_pool_processes(stack: Stack) -> None:
    env = stack.env
    port = free_port()
    with stack.side_by_side():
        stack.start_receiver()
        stack.start_worker(concurrency=2, METERBRIDGE_WORKER_METRICS_PORT=str(port))
        stack.start_beat()
    source_id, secret = new_source(env)
    with httpx.Client() as client:
        sent = [
            send(client, stack.receiver_url, source_id, secret, "test.effect", n=n)
            for n in range(6)
        ]
        sent.append(
            send(client, stack.receiver_url, source_id, secret, "test.transient", fail_times=1)
        )
        sent.append(send(client, stack.receiver_url, source_id, secret, "test.permanent"))
    finals = [wait_final(env, response.json()["event_id"]) for response in sent]
    assert finals == [EventStatus.PROCESSED] * 7 + [EventStatus.DEAD]
    # the dead one logged an event.dead, processed (matched against rules) like any event
    [announced] = wait_for(lambda: events_of(env, "event.dead"), what="the event.dead")
    assert wait_final(env, announced) == EventStatus.PROCESSED

    samples = worker_samples(f"http://127.0.0.1:{port}/metrics")
    effect = "tests.support.handlers.record_effect"
    flaky = "tests.support.handlers.flaky"
    assert samples[("meterbridge_events_processed_total", (("status", "processed"),))] == 8
    assert samples[("meterbridge_events_retried_total", ())] == 1
    assert samples[("meterbridge_events_dead_total", ())] == 1
    count = "meterbridge_handler_duration_seconds_count"
    assert samples[(count, (("handler", effect), ("outcome", "success")))] == 6
    assert samples[(count, (("handler", flaky), ("outcome", "error")))] == 1
    assert samples[(count, (("handler", flaky), ("outcome", "success")))] == 1


def test_task_logs_carry_context_and_no_secrets_or_payloads(running: Stack) -> None:
    env = running.env
    source_id, secret = new_source(env)
    canary = "canary-7f3a9c1e"  # a value only the payload holds
    with httpx.Client() as client:
        event_id = send(
            client,
            running.receiver_url,
            source_id,
            secret,
            "test.transient",
            fail_times=1,
            card=canary,
        ).json()["event_id"]
    assert wait_final(env, event_id) == EventStatus.PROCESSED
    worker_log = "".join(proc.log() for proc in running.procs if proc.name == "worker")
    ours = [
        json.loads(line)
        for line in worker_log.splitlines()
        if line.startswith("{") and event_id in line
    ]
    steps = [line for line in ours if line["event"] in ("event.retry", "event.done")]
    assert [line["event"] for line in steps] == ["event.retry", "event.done"]
    assert steps[0]["waits_in"] == "broker"  # a short wait rides on a countdown
    for line in steps:
        assert line["event_id"] == event_id
        assert line["source_id"] == source_id
        assert line["task_id"]
        assert isinstance(line["attempt"], int)
    assert [line["attempt"] for line in steps] == [1, 2]
    everything = worker_log + "".join(proc.log() for proc in running.procs)
    assert canary not in everything
    assert secret not in everything
    assert secret.removeprefix("whsec_") not in everything


def _fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERBRIDGE_")}
    env.update(
        METERBRIDGE_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(REPO),
        COLUMNS="200",
        **extra,
    )
    return env


def test_processes_refuse_an_unmigrated_server_database(tmp_path: Path) -> None:
    # given a database server named by URL, with an empty database (the embedded database
    # is meterbridge's own and kept migrated; a server's is migrated once per release)
    database_url = create_database()
    env = _fresh_env(
        tmp_path,
        METERBRIDGE_DATABASE_URL=database_url,
        METERBRIDGE_BROKER_URL=session_services().redis_url,
        METERBRIDGE_SECRET_KEY=generate_key(),
    )
    try:
        for command in (["receiver"], ["worker"], ["beat"], ["sources", "list"]):
            # when a process starts on it, then it refuses, saying what to do
            result = subprocess.run(
                [*CLI, *command], env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 1, command
            assert "run `meterbridge migrate` first" in result.stderr, command
    finally:
        drop_database(database_url)


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    env = _fresh_env(tmp_path, METERBRIDGE_BROKER_URL="kafka://nope", METERBRIDGE_RECEIVER_PORT="x")
    result = subprocess.run([*CLI, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "METERBRIDGE_BROKER_URL" in result.stderr
    assert "METERBRIDGE_RECEIVER_PORT" in result.stderr
