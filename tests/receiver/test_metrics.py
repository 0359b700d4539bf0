"""Prometheus metrics: intake counts by outcome, latency, and the state of the work."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import create_app
from tests.support.environment import Environment
from tests.support.webhooks import body_of, new_source, signed_headers


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_intake_outcomes_and_show_open_work(env: Environment) -> None:
    source_id, secret = new_source(env)
    body = body_of("invoice.paid")
    with TestClient(create_app(env.settings)) as client:
        for _ in range(2):  # stored, then a duplicate
            client.post(
                f"/webhooks/{source_id}", content=body, headers=signed_headers(secret, body, "m1")
            )
        client.post(f"/webhooks/{source_id}", content=body, headers={"webhook-id": "x"})
        client.post("/webhooks/src_missing", content=body, headers=signed_headers(secret, body))
        answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert found[("meterbridge_webhooks_accepted_total", (("provider", "generic"),))] == 1
    assert found[("meterbridge_webhooks_duplicate_total", (("provider", "generic"),))] == 1
    assert found[("meterbridge_webhooks_rejected_total", (("reason", "missing_signature"),))] == 1
    assert found[("meterbridge_webhooks_rejected_total", (("reason", "unknown_source"),))] == 1
    assert found[("meterbridge_intake_duration_seconds_count", ())] == 4
    assert found[("meterbridge_events_open", (("status", "pending"),))] == 1
    assert found[("meterbridge_oldest_unprocessed_event_age_seconds", ())] >= 0
    assert ("meterbridge_queue_depth", ()) in found
