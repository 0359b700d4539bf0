"""Each provider's scheme, checked against the provider's own SDK where it has one."""

from __future__ import annotations

import base64
import time

import pytest
import stripe
from paddle_billing.Notifications import Secret, Verifier
from paddle_billing.Notifications.PaddleSignature import PaddleSignature

from domain.errors import InvalidInput, SignatureError
from domain.providers.chargebee import ChargebeeProvider
from domain.providers.paddle import PaddleProvider
from domain.providers.paddle import sign as paddle_sign
from domain.providers.stripe import StripeProvider
from domain.providers.stripe import sign as stripe_sign

BODY = b'{"id":"evt_1","type":"customer.subscription.created","created":1790000000}'
STRIPE_SECRET = "whsec_test_5b0e2c9f"
PADDLE_SECRET = "pdl_ntfset_01hv8x_secret"


class _Request:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers, self.body = headers, body


def test_stripe_accepts_what_the_stripe_sdk_signs() -> None:
    now = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{now}.{BODY.decode()}", STRIPE_SECRET)
    StripeProvider().verify(
        {"stripe-signature": f"t={now},v1={signature}"}, BODY, STRIPE_SECRET, now, 300
    )


def test_the_stripe_sdk_accepts_what_we_sign() -> None:
    header = stripe_sign(STRIPE_SECRET, int(time.time()), BODY)
    event = stripe.Webhook.construct_event(BODY.decode(), header, STRIPE_SECRET)
    assert event["id"] == "evt_1"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_signature"),
        ("v1=abc", "missing_signature"),
        (lambda now: f"t={now - 301},v1=" + "0" * 64, "stale_timestamp"),
        (lambda now: f"t={now},v1=" + "0" * 64, "bad_signature"),
    ],
)
def test_stripe_refuses(header, code: str) -> None:
    now = int(time.time())
    headers = (
        {} if header is None else {"stripe-signature": header(now) if callable(header) else header}
    )
    with pytest.raises(SignatureError) as raised:
        StripeProvider().verify(headers, BODY, STRIPE_SECRET, now, 300)
    assert raised.value.code == code


def test_stripe_accepts_any_of_several_v1_during_a_roll() -> None:
    now = int(time.time())
    good = stripe_sign(STRIPE_SECRET, now, BODY).split(",")[1]
    StripeProvider().verify(
        {"stripe-signature": f"t={now},v1={'f' * 64},{good}"}, BODY, STRIPE_SECRET, now, 300
    )


def test_paddle_accepts_what_the_paddle_sdk_computes() -> None:
    now = int(time.time())
    digest = PaddleSignature.calculate_hmac(PADDLE_SECRET, f"{now}:".encode() + BODY).hexdigest()
    PaddleProvider().verify(
        {"paddle-signature": f"ts={now};h1={digest}"}, BODY, PADDLE_SECRET, now, 300
    )


def test_the_paddle_sdk_accepts_what_we_sign() -> None:
    header = paddle_sign(PADDLE_SECRET, int(time.time()), BODY)
    request = _Request({"Paddle-Signature": header}, BODY)
    assert Verifier().verify(request, Secret(PADDLE_SECRET)) is True


def test_paddle_refuses_a_wrong_or_stale_signature() -> None:
    now = int(time.time())
    with pytest.raises(SignatureError, match="no h1"):
        PaddleProvider().verify(
            {"paddle-signature": f"ts={now};h1={'0' * 64}"}, BODY, PADDLE_SECRET, now, 300
        )
    stale = paddle_sign(PADDLE_SECRET, now - 600, BODY)
    with pytest.raises(SignatureError) as raised:
        PaddleProvider().verify({"paddle-signature": stale}, BODY, PADDLE_SECRET, now, 300)
    assert raised.value.code == "stale_timestamp"


def test_chargebee_checks_basic_auth_in_constant_time() -> None:
    provider = ChargebeeProvider()
    secret = "hooks:correct-horse-battery"
    good = "Basic " + base64.b64encode(secret.encode()).decode()
    provider.verify({"authorization": good}, BODY, secret, 0, 300)
    for header in (
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"hooks:wrong-password").decode(),
    ):
        with pytest.raises(SignatureError):
            provider.verify({"authorization": header}, BODY, secret, 0, 300)
    with pytest.raises(InvalidInput):
        provider.check_secret("no-colon")
    provider.check_secret(provider.generate_secret())


def test_envelopes_read_each_providers_id_type_and_time() -> None:
    cb = ChargebeeProvider().envelope(
        {}, {"id": "ev_1", "event_type": "subscription_created", "occurred_at": 1790000000}
    )
    st = StripeProvider().envelope(
        {}, {"id": "evt_1", "type": "customer.created", "created": 1790000000}
    )
    pd = PaddleProvider().envelope(
        {},
        {
            "event_id": "evt_2",
            "event_type": "subscription.created",
            "occurred_at": "2026-09-21T12:00:00.123456Z",
        },
    )
    assert (cb.external_id, cb.type, cb.occurred_at.timestamp()) == (
        "ev_1",
        "subscription_created",
        1790000000,
    )
    assert (st.external_id, st.type, st.occurred_at.timestamp()) == (
        "evt_1",
        "customer.created",
        1790000000,
    )
    assert (pd.external_id, pd.type, pd.occurred_at.microsecond) == (
        "evt_2",
        "subscription.created",
        123456,
    )
