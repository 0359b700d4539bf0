"""Schema-based fuzzing of the admin API, in-process against a real database: requests
generated from the OpenAPI document (valid ones and invalid ones) never answer 5xx, every
error is JSON ``{code, message}`` with a status the route documents, and the process still
answers afterwards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings

from domain.db import transaction
from domain.organisations import create_organisation
from receiver.app import create_app
from tests.support.environment import Environment

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

#: Per operation and mode; about 40 operations, so the run stays well under a minute.
MAX_EXAMPLES = 12
BUDGET_SECONDS = 60


@pytest.fixture(scope="module")
def client(shared_env: Environment) -> Iterator[TestClient]:
    with TestClient(create_app(shared_env.settings)) as test_client:
        yield test_client


def _send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    sent = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    body: dict[str, Any] = {}
    if "json" in sent:
        body["content"] = json.dumps(sent["json"]).encode()
        sent["headers"] = {**sent.get("headers", {}), "content-type": "application/json"}
    elif sent.get("data") is not None:
        body["content"] = sent["data"]
    return client.request(
        sent["method"],
        sent["url"],
        params=sent.get("params"),
        headers=sent.get("headers"),
        **body,
    )


def _check(case: Any, response: Any) -> None:
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
    assert response.status_code < 500, where
    documented = case.operation.definition.raw["responses"]
    assert str(response.status_code) in documented, f"undocumented status: {where}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", where
        answer = response.json()
        assert isinstance(answer.get("code"), str), where
        assert isinstance(answer.get("message"), str), where


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_answer_5xx_and_every_error_is_documented(
    client: TestClient, shared_env: Environment, mode: Any
) -> None:
    with transaction(shared_env.engine) as session:
        _, key = create_organisation(session, "fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    spec = client.get("/openapi.json").json()
    spec["paths"] = {p: ops for p, ops in spec["paths"].items() if p.startswith("/api/v1/")}
    schema = schemathesis.openapi.from_dict(spec)
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            _check(case, _send(client, case, headers))

        fuzz()

    # and the process still answers, a request without a key included
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/accounts").status_code == 401
    assert client.get("/api/v1/accounts", headers=headers).status_code == 200
    assert time.monotonic() - started < BUDGET_SECONDS
