"""The generic provider verifies exactly what the official Standard Webhooks library signs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from domain.errors import InvalidInput, SignatureError
from domain.providers.generic import GenericProvider, sign

PROVIDER = GenericProvider()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
BODY = b'{"type":"invoice.paid","data":{"id":"inv_1"}}'


def headers_for(body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", at, body.decode()),
    }


def verify(headers: dict[str, str], body: bytes = BODY) -> None:
    PROVIDER.verify(headers, body, SECRET, time.time(), 300)


def test_accepts_a_signature_made_by_the_official_library() -> None:
    verify(headers_for(BODY))


@given(st.binary(max_size=200).map(lambda b: b.hex().encode()))
def test_our_signature_is_accepted_by_the_official_library(body: bytes) -> None:
    now = int(time.time())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, "msg_2", now, body),
    }
    Webhook(SECRET).verify(body, headers, json_parse=False)


def test_any_of_several_signatures_may_match_during_a_rotation() -> None:
    headers = headers_for(BODY)
    old = headers_for(BODY, secret=OTHER_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{old} v2,bogus {headers['webhook-signature']}"
    verify(headers)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: h.pop("webhook-signature"), "missing_signature"),
        (lambda h: h.pop("webhook-id"), "missing_signature"),
        (lambda h: h.update({"webhook-timestamp": "soon"}), "bad_timestamp"),
        (lambda h: h.update({"webhook-signature": "v1,AAAA"}), "bad_signature"),
        (lambda h: h.update({"webhook-id": "msg_other"}), "bad_signature"),
    ],
)
def test_rejects_missing_or_wrong_signatures(mutate, code: str) -> None:
    headers = headers_for(BODY)
    mutate(headers)
    with pytest.raises(SignatureError) as raised:
        verify(headers)
    assert raised.value.code == code


def test_rejects_a_changed_body() -> None:
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify(headers_for(BODY), BODY.replace(b"inv_1", b"inv_2"))


def test_rejects_a_signature_from_another_secret() -> None:
    with pytest.raises(SignatureError):
        verify(headers_for(BODY, secret=OTHER_SECRET))


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_rejects_timestamps_outside_five_minutes(skew: timedelta) -> None:
    with pytest.raises(SignatureError) as raised:
        verify(headers_for(BODY, at=datetime.now(UTC) + skew))
    assert raised.value.code == "stale_timestamp"


def test_accepts_timestamps_inside_five_minutes() -> None:
    verify(headers_for(BODY, at=datetime.now(UTC) - timedelta(minutes=4, seconds=50)))


def test_generated_secrets_are_usable_and_bad_ones_refused() -> None:
    PROVIDER.check_secret(PROVIDER.generate_secret())
    with pytest.raises(InvalidInput):
        PROVIDER.check_secret("whsec_not*base64")
    with pytest.raises(InvalidInput):
        PROVIDER.check_secret("whsec_c2hvcnQ=")


def test_envelope_reads_id_type_and_time() -> None:
    envelope = PROVIDER.envelope(
        {"webhook-id": "msg_9", "webhook-timestamp": "1700000000"},
        {"type": "invoice.paid", "timestamp": "2024-01-02T03:04:05Z"},
    )
    assert envelope.external_id == "msg_9"
    assert envelope.type == "invoice.paid"
    assert envelope.occurred_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    untyped = PROVIDER.envelope({"webhook-timestamp": "1700000000"}, [1, 2])
    assert untyped.type == "unknown"
    assert untyped.occurred_at == datetime.fromtimestamp(1700000000, UTC)
