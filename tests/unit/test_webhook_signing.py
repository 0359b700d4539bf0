"""Outbound messages are signed so that the official Standard Webhooks library verifies
them, with one secret and during a rotation with each of two."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from domain.errors import InvalidInput
from domain.providers.generic import GenericProvider
from domain.webhooks.signing import check_secret, generate_secret, signature_headers

BODY = b'{"type":"bill.approved","data":{"total":"5000.00","currency":"USD"}}'


def test_a_message_verifies_with_the_official_library() -> None:
    secret = generate_secret()
    headers = signature_headers([secret], "msg_1", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "bill.approved",
        "data": {"total": "5000.00", "currency": "USD"},
    }


@given(
    body=st.text(max_size=300).map(str.encode),
    msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True),
)
def test_any_text_body_verifies(body: bytes, msg_id: str) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = signature_headers([secret], msg_id, int(time.time()), body)
    Webhook(secret).verify(body, headers, json_parse=False)


def test_during_a_rotation_each_secret_verifies_the_message() -> None:
    new, old = generate_secret(), generate_secret()
    headers = signature_headers([new, old], "msg_2", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_the_signature_covers_id_timestamp_and_body() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = signature_headers([secret], "msg_3", now, BODY)
    for changed in (
        {**headers, "webhook-id": "msg_4"},
        {**headers, "webhook-timestamp": str(now - 1)},
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, changed)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)


def test_the_inbound_provider_verifies_what_the_sender_signs() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = signature_headers([secret], "msg_5", now, BODY)
    GenericProvider().verify(headers, BODY, secret, now, 300)


def test_generated_secrets_are_distinct_whsec_keys() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        check_secret(secret)


@pytest.mark.parametrize(
    ("secrets", "msg_id", "message"),
    [
        ([], "msg_1", "at least one"),
        (["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg_1", "whsec_"),
        (["whsec_not base64!"], "msg_1", "base64"),
        (["whsec_c2hvcnQ="], "msg_1", "16 bytes"),
        (["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "", "message id"),
        (["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg 1", "message id"),
    ],
)
def test_bad_secrets_and_ids_are_refused(secrets: list[str], msg_id: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        signature_headers(secrets, msg_id, 1_700_000_000, BODY)
