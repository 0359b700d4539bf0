"""Property: whatever headers and body arrive, each provider's check either passes or
raises the project's own ``SignatureError``, never ValueError, OverflowError and the like;
and a body's envelope is either read or refused with ``UnacceptableEvent``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import SignatureError
from domain.providers import PROVIDERS
from domain.providers.base import UnacceptableEvent

SECRETS = {
    "generic": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "chargebee": "chargebee:password123",
    "stripe": "whsec_test_5b0e2c9f",
    "paddle": "pdl_ntfset_01hv8x_secret",
}
NOW = int(time.time())

#: Numbers in every spelling str.isdigit or int() might half-accept.
digits = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.just(str(NOW)),
    st.text(alphabet="0123456789\u00b2\u00b3\u0663\uff11\u2070 _+-", min_size=0, max_size=20),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),
)
texts = st.text(max_size=60)  # every code point, surrogates and NUL included
pieces = st.one_of(texts, digits, st.text(alphabet="0123456789abcdef", max_size=64))


@st.composite
def stripe_like(draw: st.DrawFn, time_key: str, sig_key: str, sep: str) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.builds(lambda v: f"{time_key}={v}", digits),
                st.builds(lambda v: f"{sig_key}={v}", pieces),
                texts,
            ),
            max_size=5,
        )
    )
    return sep.join(parts)


HEADERS: dict[str, st.SearchStrategy[dict[str, str]]] = {
    "generic": st.fixed_dictionaries(
        {},
        optional={
            "webhook-id": texts,
            "webhook-timestamp": digits,
            "webhook-signature": st.lists(
                st.one_of(st.builds(lambda v: f"v1,{v}", pieces), texts), max_size=4
            ).map(" ".join),
        },
    ),
    "chargebee": st.fixed_dictionaries(
        {},
        optional={
            "authorization": st.one_of(
                texts, st.builds(lambda v: f"Basic {v}", st.one_of(texts, pieces))
            )
        },
    ),
    "stripe": st.fixed_dictionaries({}, optional={"stripe-signature": stripe_like("t", "v1", ",")}),
    "paddle": st.fixed_dictionaries(
        {}, optional={"paddle-signature": stripe_like("ts", "h1", ";")}
    ),
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_header_check_only_ever_raises_a_signature_error(provider: str) -> None:
    @settings(max_examples=400, deadline=None)
    @given(headers=HEADERS[provider], body=st.binary(max_size=64), now=st.sampled_from([NOW]))
    def check(headers: dict[str, str], body: bytes, now: int) -> None:
        code = "passed"
        try:
            PROVIDERS[provider].verify(headers, body, SECRETS[provider], now, 300)
        except SignatureError as error:  # anything else fails the test with its traceback
            code = error.code
        assert code in {
            "passed",
            "missing_signature",
            "bad_signature",
            "bad_timestamp",
            "stale_timestamp",
        }

    check()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False)
    | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)
envelope_fields = st.fixed_dictionaries(
    {},
    optional={
        key: json_values
        for key in ("id", "event_id", "type", "event_type", "created", "occurred_at", "timestamp")
    },
)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_an_envelope_is_read_or_refused_as_unacceptable(provider: str) -> None:
    @settings(max_examples=300, deadline=None)
    @given(payload=st.one_of(envelope_fields, json_values), headers=HEADERS[provider])
    def check(payload: Any, headers: dict[str, str]) -> None:
        code = "read"
        try:
            PROVIDERS[provider].envelope(headers, payload)
        except UnacceptableEvent as error:  # anything else fails the test with its traceback
            code = error.code
        assert code in {"read", "invalid_event"}

    check()
