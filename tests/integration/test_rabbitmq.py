"""The same pipeline on RabbitMQ, which production may use instead of Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain.events import EventStatus
from tests.conftest import REQUIRE_ALL
from tests.integration.test_pipeline import attempts_of, effects_of, wait_final
from tests.support.embedded import processes_using
from tests.support.environment import make_env
from tests.support.processes import Stack
from tests.support.webhooks import new_source, send
from workers.embedded import EmbeddedServers

AMQP_URL = os.environ.get("METERBRIDGE_TEST_AMQP_URL", "")

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def rabbit_stack(tmp_path: Path) -> Iterator[Stack]:
    if not AMQP_URL:
        if REQUIRE_ALL:
            pytest.fail("METERBRIDGE_TEST_AMQP_URL is required in CI")
        pytest.skip("METERBRIDGE_TEST_AMQP_URL is not set")
    env = make_env(tmp_path, broker_url=AMQP_URL)
    stack = Stack(env, tmp_path)
    try:
        with stack.side_by_side():
            stack.start_receiver()
            stack.start_worker()
            stack.start_beat()
        yield stack
    finally:
        stack.close()
        # The data dir's Redis holds the rate limits (RabbitMQ is no Redis): the last of
        # receiver, worker and beat to stop (each by SIGTERM) stops it.
        left = processes_using(env.settings.data_dir)
        EmbeddedServers(env.settings).stop()
        env.close()
    assert left == [], f"stopped processes left the embedded servers running: {left}"


def test_events_are_processed_and_retried_over_rabbitmq(rabbit_stack: Stack) -> None:
    env = rabbit_stack.env
    source_id, secret = new_source(env)
    with httpx.Client(base_url=rabbit_stack.receiver_url) as client:
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"
        effect = send(client, "", source_id, secret, "test.effect").json()["event_id"]
        flaky = send(client, "", source_id, secret, "test.transient", fail_times=1).json()[
            "event_id"
        ]
    assert wait_final(env, effect) == EventStatus.PROCESSED
    assert effects_of(env, effect) == ["effect", "second"]
    assert wait_final(env, flaky) == EventStatus.PROCESSED
    assert [a.outcome for a in attempts_of(env, flaky)] == ["retry", "succeeded"]
