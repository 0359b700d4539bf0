"""Property: whatever arrives at ``POST /webhooks/{source_id}`` (signed or not, any body,
any source id), the answer is never a 5xx, every error is a JSON ``{code, message}``, and
the process still answers afterwards."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from tests.receiver.test_webhook_hostile_input import signed, source
from tests.support.environment import Environment

PROVIDERS = ("generic", "chargebee", "stripe", "paddle")
texts = st.text(max_size=40)  # NUL and lone surrogates included
hostile = st.one_of(
    texts,
    st.text(min_size=250, max_size=300),
    st.integers(),
    st.sampled_from([10**20, -1, 2**63, 253_402_300_800, 1.5e300]),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
KEYS = ("id", "event_id", "type", "event_type", "created", "occurred_at", "timestamp")
SPECIAL = [
    b"[" * 100_000,
    b"[" * 70 + b"]" * 70,
    b'{"type": "x", "n": ' + b"7" * 5000 + b"}",
    b'{"type": "x", "t": "0001-01-01T00:00:00+01:00", "timestamp": "0001-01-01T00:00:00+01:00"}',
    '{"type": "x"}'.encode("utf-16"),
    b"\xef\xbb\xbf{}",
    b"",
]
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), hostile).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=100),
    st.sampled_from(SPECIAL),
)
#: What a header can carry over HTTP: latin-1, without line breaks.
header_text = st.text(
    alphabet=st.characters(max_codepoint=0xFF, blacklist_characters="\r\n\x00"), max_size=300
)
source_ids = st.one_of(
    st.just("known"),
    texts.map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
    st.sampled_from(["%00", "%ED%A0%80", "a" * 41]),
)


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
        assert error["message"]


def test_the_webhook_route_never_answers_5xx(env: Environment) -> None:
    sources = {provider: source(env, provider) for provider in PROVIDERS}

    with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:

        @settings(
            max_examples=250,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            provider=st.sampled_from(PROVIDERS),
            body=bodies,
            sign=st.booleans(),
            msg_id=header_text,
            noise=st.dictionaries(
                st.sampled_from(
                    ["stripe-signature", "paddle-signature", "webhook-timestamp", "content-length"]
                ),
                header_text,
                max_size=2,
            ),
            path=source_ids,
        )
        def post(
            provider: str,
            body: bytes,
            sign: bool,
            msg_id: str,
            noise: dict[str, str],
            path: str,
        ) -> None:
            source_id, secret = sources[provider]
            headers = noise
            if sign:
                headers = signed(provider, secret, body, msg_id or None)
            raw = {name: value.encode("latin-1") for name, value in headers.items()}
            target = source_id if path == "known" else path
            check(client.post(f"/webhooks/{target}", content=body, headers=raw))

        post()
        assert client.get("/healthz").json() == {"status": "ok"}
        source_id, secret = sources["generic"]
        body = b'{"type": "still.answering"}'
        headers = signed("generic", secret, body)
        after = client.post(f"/webhooks/{source_id}", content=body, headers=headers)
        assert after.status_code == 202
