"""The failure counter end to end: real workers, the fake Chargebee, a real SMTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest

from domain.db import transaction
from domain.organisations import create_api_key
from domain.users import create_user
from tests.conftest import outside_env
from tests.integration.test_pipeline import wait_final
from tests.support.billing import Api, prepare_customer, summary
from tests.support.environment import Environment
from tests.support.fake_chargebee import FakeChargebee
from tests.support.processes import Stack, wait_for
from tests.support.smtp import SmtpServer, text_of
from tests.support.webhooks import new_source, send

STANDING = {"type": "STANDING_CHARGE", "quantity": 1, "unit_price": "49.00", "subtotal": "49.00"}


@pytest.fixture
def api(running: Stack, fake_chargebee: FakeChargebee) -> Iterator[Api]:
    fake_chargebee.price("cb-default")
    client = Api(running.env, running.receiver_url)
    yield client
    client.http.close()


def users(api: Api, count: int = 2) -> list[dict]:
    tag = uuid.uuid4().hex[:8]
    return [
        api.post(
            "/api/v1/users", {"name": f"User {n}", "email": f"u{n}-{tag}@example.com"}, status=201
        )
        for n in range(count)
    ]


def emails_sent(api: Api, count: int) -> None:
    """Wait until the organisation's email.send events are all processed: only then is a
    second copy of an email ruled out."""
    seen: list[dict] = []

    def all_processed() -> bool:
        seen[:] = api.get("/api/v1/events", type="email.send")
        return [e["status"] for e in seen] == ["processed"] * count

    try:
        wait_for(all_processed, timeout=60, what=f"{count} emails sent")
    except AssertionError as timed_out:
        detail = [(e["id"], e["status"], e["attempts"]) for e in seen]
        raise AssertionError(f"{timed_out}; email.send events: {detail}") from None


def disabled_events(api: Api, config_id: str) -> list[dict]:
    events = api.get("/api/v1/events", type="integration.disabled.error")
    return [
        e
        for e in events
        if e["id"] and config_id in json.dumps(api.get(f"/api/v1/events/{e['id']}")["payload"])
    ]


def test_ten_failed_runs_disable_the_config_email_each_user_once_and_enable_releases_the_held_work(
    api: Api, fake_chargebee: FakeChargebee, smtp_server: SmtpServer
) -> None:
    people = users(api)
    account, invoice = prepare_customer(fake_chargebee, api)
    wrong = api.credential(api_key="revoked-key")
    config = api.config(
        credential_id=wrong["id"], disabled_notification_user_ids=[u["id"] for u in people]
    )
    bill_id = ""
    for n in range(1, 11):  # Chargebee refuses the key: ten runs in a row end in error
        bill_id = api.bill(account["id"], [{**STANDING, "quantity": n, "subtotal": str(49 * n)}])[
            "id"
        ]
        runs = api.wait_runs(bill_id, n)
        assert runs[-1]["status"] == "AUTH_FAILED"
        shown = api.get(f"/api/v1/integrations/{config['id']}")
        assert shown["consecutive_errors"] == n
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "disabled automatically after 10 successive errors"
    assert shown["disabled_at"] is not None
    assert len(disabled_events(api, config["id"])) == 1

    # each chosen user gets exactly one email naming the config and its errors
    for person in people:
        [message] = wait_for(lambda p=person: smtp_server.to(p["email"]), timeout=30)
        assert config["name"] in message["Subject"]
        body = text_of(message)
        assert "integration.authentication.error" in body
        assert f"meterbridge integrations enable {config['id']}" in body

    # work for the disabled config is held, not sent and not dropped
    api.bill(account["id"], [STANDING])
    held = api.wait_runs(bill_id, 11)[-1]
    assert held["status"] == "DISABLED"
    assert fake_chargebee.lines(invoice) == []

    # when the credential is fixed and the config enabled, the held run goes out
    good = api.credential()
    api.http.patch(
        f"/api/v1/integrations/{config['id']}", json={"credential_id": good["id"]}
    ).raise_for_status()
    enabled = api.post(f"/api/v1/integrations/{config['id']}/enable")
    assert (enabled["enabled"], enabled["consecutive_errors"]) == (True, 0)
    released = wait_for(
        lambda: (
            (r := api.get(f"/api/v1/integration-runs/{held['id']}"))["status"] == "COMPLETE" and r
        ),
        timeout=30,
    )
    assert released["items_added"] == 1
    assert summary(fake_chargebee.lines(invoice)) == [("cb-default", 1, 4900, 4900)]
    emails_sent(api, len(people))
    assert all(len(smtp_server.to(p["email"])) == 1 for p in people)


def test_twenty_concurrent_failing_runs_count_exactly_and_disable_once(
    api: Api, running: Stack, fake_chargebee: FakeChargebee, smtp_server: SmtpServer
) -> None:
    people = users(api, 3)
    config = api.config(
        credential_id=None, disabled_notification_user_ids=[u["id"] for u in people]
    )
    extra = running.start_worker(concurrency=4, **outside_env(fake_chargebee, smtp_server))
    try:
        accounts = [api.account() for _ in range(20)]
        bills = [api.bill(account["id"], [STANDING])["id"] for account in accounts]
        runs = [api.wait_runs(bill_id, 1)[0] for bill_id in bills]
    finally:
        extra.stop()
    failed = [run for run in runs if run["status"] == "AUTH_FAILED"]
    held = [run for run in runs if run["status"] == "DISABLED"]
    assert len(failed) + len(held) == 20
    assert len(failed) >= 10
    shown = api.get(f"/api/v1/integrations/{config['id']}")
    assert shown["consecutive_errors"] == len(failed)
    assert shown["enabled"] is False
    assert len(disabled_events(api, config["id"])) == 1
    emails_sent(api, len(people))
    assert [len(smtp_server.to(p["email"])) for p in people] == [1, 1, 1]


def test_a_source_whose_events_keep_dying_is_disabled_and_enabling_releases_its_events(
    running: Stack, smtp_server: SmtpServer
) -> None:
    env = running.env
    with transaction(env.engine) as session:
        person = create_user(
            session, "org_default", "Ops", f"ops-{uuid.uuid4().hex[:8]}@example.com"
        )
    source_id, secret = new_source(env)
    subprocess.run(
        [sys.executable, "-m", "workers.cli", "sources", "show", source_id],
        env=env.process_env(),
        check=True,
        capture_output=True,
    )
    with httpx.Client(base_url=running.receiver_url) as client:
        client.headers["Authorization"] = f"Bearer {_key(env)}"
        client.patch(
            f"/api/v1/sources/{source_id}", json={"disabled_notification_user_ids": [person.id]}
        ).raise_for_status()
        dead = [
            send(client, "", source_id, secret, "test.permanent").json()["event_id"]
            for _ in range(10)
        ]
        for event_id in dead:
            assert wait_final(env, event_id) == "dead"
        shown = wait_for(
            lambda: (
                (s := client.get(f"/api/v1/sources/{source_id}").json())["enabled"] is False and s
            ),
            timeout=20,
        )
        assert shown["consecutive_errors"] == 10
        [message] = wait_for(lambda: smtp_server.to(person.email), timeout=30)
        assert "source" in message["Subject"]
        assert f"meterbridge sources enable {source_id}" in text_of(message)

        # the source still accepts and stores; its events are held
        held = [
            send(client, "", source_id, secret, "test.effect").json()["event_id"] for _ in range(3)
        ]
        for event_id in held:
            wait_for(
                lambda e=event_id: client.get(f"/api/v1/events/{e}").json()["status"] == "held",
                timeout=20,
            )

    enabled = subprocess.run(
        [sys.executable, "-m", "workers.cli", "sources", "enable", source_id],
        env=env.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "3 held events released" in enabled.stdout, enabled.stderr
    for event_id in held:
        assert wait_final(env, event_id) == "processed"
    assert len(smtp_server.to(person.email)) == 1


def _key(env: Environment) -> str:
    with transaction(env.engine) as session:
        _, key = create_api_key(session, "org_default", "test")
    return key


def test_emails_wait_for_an_smtp_server_that_is_down_and_go_out_once(
    api: Api, smtp_server: SmtpServer
) -> None:
    people = users(api)
    config = api.config(
        credential_id=None, disabled_notification_user_ids=[u["id"] for u in people]
    )
    smtp_server.stop()
    try:
        account = api.account()
        for _ in range(10):
            bill = api.bill(account["id"], [STANDING])
        api.wait_runs(bill["id"], 10)
        [notice] = disabled_events(api, config["id"])
        # the emails are being retried while the server is down
        wait_for(
            lambda: any(
                e["type"] == "email.send" and e["attempts"] >= 2
                for e in api.get("/api/v1/events", type="email.send")
            ),
            timeout=30,
            what="an email attempt to fail",
        )
        assert all(smtp_server.to(p["email"]) == [] for p in people)
    finally:
        smtp_server.start()
    emails_sent(api, len(people))
    assert [len(smtp_server.to(p["email"])) for p in people] == [1, 1]
    assert notice["id"]
