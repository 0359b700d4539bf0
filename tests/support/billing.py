"""Driving bills out through the admin API, as an operator or the billing platform would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from domain.bills import Bill
from domain.db import transaction
from domain.eventlog import append_internal
from domain.organisations import create_organisation
from tests.support.environment import Environment, make_env
from tests.support.fake_chargebee import API_KEY, FakeChargebee
from tests.support.processes import Stack, wait_for

FINAL_RUN = {"COMPLETE", "ERROR", "AUTH_FAILED", "DISABLED"}
PERIOD = {"period_start": "2026-10-01", "period_end": "2026-11-01", "currency": "USD"}


#: The last part of the admin API's action paths, which answer 200 rather than 201.
ACTIONS = frozenset({"approve", "enable", "disable", "replay", "action"})


class Api:
    """An organisation of its own, and its API key."""

    def __init__(self, env: Environment, base_url: str) -> None:
        with transaction(env.engine) as session:
            org, key = create_organisation(session, f"test-{uuid.uuid4().hex[:8]}")
        self.org_id = org.id
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int | None = None) -> Any:
        """A POST to a collection creates (201); one to an action (``…/approve``) is 200."""
        response = self.http.post(path, json=body or {})
        action = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] in ACTIONS
        expected = status or (200 if action else 201)
        assert response.status_code == expected, response.text
        return response.json()

    def account(self, code: str | None = None, **fields: Any) -> dict[str, Any]:
        code = code or f"cus_{uuid.uuid4().hex[:10]}"
        return self.post("/api/v1/accounts", {"code": code, "name": code, **fields})

    def credential(self, api_key: str = API_KEY) -> dict[str, Any]:
        return self.post(
            "/api/v1/credentials", {"name": "cb", "site": "acme-test", "api_key": api_key}
        )

    def config(self, credential_id: str | None = "auto", **options: Any) -> dict[str, Any]:
        if credential_id == "auto":
            credential_id = self.credential()["id"]
        entity = _take(options, ENTITY_OPTIONS)
        body = {
            "name": options.pop("name", "chargebee"),
            "credential_id": credential_id,
            "entity_config": entity,
            "destination_config": {
                "default_price_id": "cb-default",
                **options.pop("chargebee", {}),
            },
            **options,
        }
        return self.post("/api/v1/integrations", body)

    def bill(self, account_id: str, lines: list[dict[str, Any]], **period: str) -> dict[str, Any]:
        body = {"account_id": account_id, **PERIOD, **period, "line_items": lines}
        return self.post("/api/v1/bills", body)

    def approve(self, bill_id: str) -> dict[str, Any]:
        return self.post(f"/api/v1/bills/{bill_id}/approve")

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        return self.get("/api/v1/integration-runs", **filters)

    def wait_runs(self, bill_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until the bill has ``count`` runs, all finished; oldest first."""

        def finished() -> list[dict[str, Any]] | None:
            runs = self.runs(bill_id=bill_id)
            done = len(runs) >= count and all(run["status"] in FINAL_RUN for run in runs)
            return list(reversed(runs)) if done else None

        return wait_for(finished, timeout=timeout, interval=0.2, what=f"{count} runs of {bill_id}")

    def wait_event(self, event_id: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (
                (e := self.get(f"/api/v1/events/{event_id}"))["status"]
                in ("processed", "ignored", "dead")
                and e
            ),
            timeout=timeout,
            what=f"event {event_id}",
        )


ENTITY_OPTIONS = {
    "only_send_on_approval",
    "use_external_mapping_account_code",
    "excluded_line_item_types",
    "account_filter",
    "enforce_external_mappings_for_config",
}
#: The options of a config that are the config's own, neither its entity's nor its
#: destination's.
CONFIG_OPTIONS = {"name", "disabled_notification_user_ids"}


def _take(options: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The options named, taken out of ``options``."""
    return {name: options.pop(name) for name in list(options) if name in names}


def running_stack(tmp: Path, outside: Mapping[str, str], *, concurrency: int) -> Iterator[Stack]:
    """A module's own stack, for its fixture to ``yield from``: an environment in ``tmp``,
    the receiver, two workers (``concurrency`` tasks at once each) and beat, the receiver
    and the workers given ``outside`` (where the fakes are, short timeouts) in their
    environment. Stopped, and the environment closed, when the fixture ends."""
    env = make_env(tmp)
    stack = Stack(env, tmp)
    try:
        with stack.side_by_side():
            stack.start_receiver(**outside)
            for _ in range(2):
                stack.start_worker(concurrency=concurrency, **outside)
            stack.start_beat()
        yield stack
    finally:
        stack.close()
        env.close()


def api_on(stack: Stack) -> Iterator[Api]:
    """An organisation of its own on ``stack``'s receiver, for an ``api`` fixture to
    ``yield from``; its HTTP client is closed when the fixture ends."""
    client = Api(stack.env, stack.receiver_url)
    yield client
    client.http.close()


def destination_config(
    api: Api, destination: str, credential_id: str, **options: Any
) -> dict[str, Any]:
    """A config sending bills to ``destination`` with the credential (201, or the test
    fails). ``options`` are split: ENTITY_OPTIONS go to ``entity_config``, CONFIG_OPTIONS
    to the config itself (``name`` is the destination's unless given), the rest to
    ``destination_config``."""
    entity = _take(options, ENTITY_OPTIONS)
    own = _take(options, CONFIG_OPTIONS)
    body = {
        "name": destination,
        **own,
        "destination": destination,
        "credential_id": credential_id,
        "entity_config": entity,
        "destination_config": options,
    }
    config: dict[str, Any] = api.post("/api/v1/integrations", body)
    return config


def external_mapping(
    api: Api, entity: str, entity_id: str, system: str, table: str, external_id: str
) -> None:
    """Map ``entity`` ``entity_id`` (an account's id, a product's) to ``external_id``, a
    record of ``system``'s ``table``."""
    api.post(
        "/api/v1/external-mappings",
        {
            "entity": entity,
            "entity_id": entity_id,
            "external_system": system,
            "external_table": table,
            "external_id": external_id,
        },
    )


def month(n: int) -> dict[str, str]:
    """The n-th month from January 2024 as a bill period, so one account can have many."""
    year, index = divmod(n - 1, 12)
    following = divmod(n, 12)
    return {
        "period_start": f"{2024 + year}-{index + 1:02d}-01",
        "period_end": f"{2024 + following[0]}-{following[1] + 1:02d}-01",
    }


def summary(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a person checks on the invoice: item price, quantity, unit amount, amount."""
    return sorted(
        (
            line["entity_id"],
            line["quantity_in_decimal"] or line["quantity"],
            line["unit_amount_in_decimal"] or line["unit_amount"],
            line["amount"],
        )
        for line in lines
    )


def prepare_customer(fake: FakeChargebee, api: Api, **fields: Any) -> tuple[dict[str, Any], str]:
    account = api.account(**fields)
    return account, fake.pending_invoice(account["code"])


def replay_approval(stack: Stack, api: Api, bill_id: str, **changes: Any) -> None:
    """The bill's approval processed again (as a replay would), after ``changes`` to the
    bill. Through the API an approved bill is final: approving again logs nothing, and
    regenerating it answers 409; so a second run for it only comes this way."""
    with transaction(stack.env.engine) as session:
        bill = session.get(Bill, bill_id)
        assert bill is not None
        for name, value in changes.items():
            setattr(bill, name, value)
        session.add(bill)
        append_internal(
            session,
            org_id=api.org_id,
            type="bill.approved",
            payload={"bill_id": bill.id, "account_id": bill.account_id, "version": bill.version},
        )
