"""Notification rules and webhook destinations through the admin API in-process: what is
refused and how precisely, what is never shown, and what another organisation cannot
reach."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from domain.db import transaction
from domain.webhooks.destinations import WebhookDestination
from receiver.app import create_app
from tests.receiver.test_admin_api import Org
from tests.support.environment import Environment

#: A public address written as a literal: saved without a DNS lookup.
PUBLIC_URL = "https://1.1.1.1/hooks/meterbridge"
RULES = "/api/v1/notification-rules"
HOOKS = "/api/v1/webhook-destinations"


@pytest.fixture
def orgs(env: Environment) -> Iterator[tuple[Org, Org]]:
    with TestClient(create_app(env.settings)) as client:
        yield Org(client, env), Org(client, env)


def refused(org: Org, path: str, body: dict[str, Any], status: int = 422) -> dict[str, Any]:
    answer = org.call("POST", path, body, status=status).json()
    return answer


def rule_body(destination_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "code": "big-bills",
        "name": "Big bills",
        "event_name": "bill.approved",
        "calculation": 'total >= 5000 AND currency == "USD"',
        "webhook_destination_ids": [destination_id],
        **fields,
    }


@pytest.fixture
def hook(orgs: tuple[Org, Org]) -> dict[str, Any]:
    return orgs[0].make(HOOKS, {"url": PUBLIC_URL, "description": "finance"})


def test_a_rule_is_created_in_one_call_and_its_code_is_unique(
    orgs: tuple[Org, Org], hook: dict[str, Any]
) -> None:
    org, other = orgs
    rule = org.make(RULES, rule_body(hook["id"]))
    assert rule["calculation"] == 'total >= 5000 AND currency == "USD"'
    assert org.call("GET", f"{RULES}/{rule['id']}", status=200).json() == rule
    assert refused(org, RULES, rule_body(hook["id"]), status=409)["code"] == "conflict"
    theirs = other.make(HOOKS, {"url": PUBLIC_URL})
    other.make(RULES, rule_body(theirs["id"]))
    other.call("GET", f"{RULES}/{rule['id']}", status=404)


@pytest.mark.parametrize(
    ("calculation", "position", "words"),
    [
        ("totl >= 5000", 0, "totl"),
        ('total >= 5000 AND currency > "USD" OR', 37, "end"),
        ("currency >= 5000", 12, "cannot be compared"),
        ("total", 0, "not a condition"),
        ('total >= "a lot"', 9, "cannot be compared"),
    ],
)
def test_a_calculation_that_does_not_fit_the_events_fields_is_refused_with_its_position(
    orgs: tuple[Org, Org], hook: dict[str, Any], calculation: str, position: int, words: str
) -> None:
    answer = refused(orgs[0], RULES, rule_body(hook["id"], calculation=calculation))
    [detail] = answer["errors"]
    assert detail["field"] == "body.calculation"
    assert detail["position"] == position, answer
    assert words in detail["reason"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event_name": "bill.exploded"}, "body.event_name"),
        ({"always_fire": True}, "body.calculation"),
        ({"calculation": None}, "body.calculation"),
        ({"webhook_destination_ids": []}, "body.webhook_destination_ids"),
        ({"webhook_destination_ids": ["whd_nope"]}, "body.webhook_destination_ids"),
        ({"user_ids": ["usr_nope"]}, "body.user_ids"),
        ({"code": "no spaces"}, "body.code"),
        ({"schedule_cron": "0 9 * * *"}, "body.schedule_cron"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_naming_the_field(
    orgs: tuple[Org, Org], hook: dict[str, Any], fields: dict[str, Any], field: str
) -> None:
    answer = refused(orgs[0], RULES, rule_body(hook["id"], **fields))
    assert answer["errors"][0]["field"] == field, answer


def test_another_organisations_destination_cannot_be_named(orgs: tuple[Org, Org]) -> None:
    org, other = orgs
    theirs = other.make(HOOKS, {"url": PUBLIC_URL})
    answer = refused(org, RULES, rule_body(theirs["id"]))
    assert theirs["id"] in answer["message"]
    org.call("GET", f"{HOOKS}/{theirs['id']}", status=404)
    org.call("POST", f"{HOOKS}/{theirs['id']}/rotate-secret", {}, status=404)
    org.call("GET", f"{HOOKS}/{theirs['id']}/attempts", status=404)


@pytest.mark.parametrize(
    "url",
    [
        "http://1.1.1.1/plain-http",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hook",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://0x7f000001/hook",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "ftp://1.1.1.1/hook",
        "https://does-not-resolve.invalid/hook",
    ],
)
def test_a_destination_that_could_reach_inside_is_refused_when_saved(
    orgs: tuple[Org, Org], url: str
) -> None:
    answer = refused(orgs[0], HOOKS, {"url": url})
    assert answer["errors"][0]["field"] == "body.url", answer


def test_the_signing_secret_is_shown_once_and_stored_encrypted(
    orgs: tuple[Org, Org], hook: dict[str, Any], env: Environment
) -> None:
    org, _ = orgs
    assert hook["secret"].startswith("whsec_")
    shown = org.call("GET", f"{HOOKS}/{hook['id']}", status=200).json()
    listed = org.call("GET", HOOKS, status=200).json()
    assert "secret" not in shown
    assert hook["secret"] not in str(listed)
    rotated = org.call("POST", f"{HOOKS}/{hook['id']}/rotate-secret", {}, status=200).json()
    assert rotated["secret"] != hook["secret"]
    with transaction(env.engine) as session:
        stored = session.exec(select(WebhookDestination)).all()
    text = repr([s.model_dump() for s in stored])
    assert hook["secret"] not in text
    assert rotated["secret"] not in text


def test_replay_needs_a_choice_and_a_test_needs_a_known_event_type(
    orgs: tuple[Org, Org], hook: dict[str, Any]
) -> None:
    org, _ = orgs
    answer = refused(org, f"{HOOKS}/{hook['id']}/replay", {})
    assert "all=true" in answer["message"]
    dry = org.call("POST", f"{HOOKS}/{hook['id']}/replay", {"all": True, "dry_run": True})
    assert dry.json() == {"dry_run": True, "message_ids": []}
    answer = refused(org, f"{HOOKS}/{hook['id']}/test", {"event_type": "bill.exploded"})
    assert answer["errors"][0]["field"] == "body.event_type"


def test_a_destination_deleted_leaves_its_rules(
    orgs: tuple[Org, Org], hook: dict[str, Any]
) -> None:
    org, _ = orgs
    second = org.make(HOOKS, {"url": PUBLIC_URL})
    rule = org.make(
        RULES, rule_body(hook["id"], webhook_destination_ids=[hook["id"], second["id"]])
    )
    org.call("DELETE", f"{HOOKS}/{hook['id']}", status=204)
    kept = org.call("GET", f"{RULES}/{rule['id']}", status=200).json()
    assert kept["webhook_destination_ids"] == [second["id"]]


def test_messages_are_filtered_by_a_known_status_only(
    orgs: tuple[Org, Org], hook: dict[str, Any]
) -> None:
    org, _ = orgs
    assert org.call("GET", f"{HOOKS}/{hook['id']}/messages?status=failed", status=200).json() == []
    answer = org.call("GET", f"{HOOKS}/{hook['id']}/messages?status=lost", status=422).json()
    assert answer["errors"][0]["field"] == "query.status"
