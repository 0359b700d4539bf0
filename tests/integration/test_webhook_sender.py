"""The webhook sender over real sockets: refused addresses are never connected to, the
connection goes to the checked address only (rebinding), redirects are not followed, TLS
carries the URL's host as SNI and Host while connecting by address, and every answer is
classified."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from domain.webhooks.addresses import AddressRefused, WebhookUrlRefused, parse_networks
from domain.webhooks.signing import generate_secret, signature_headers
from tests.support.webhook_receiver import Answer, Receiver, make_certificates
from workers.webhooks.sender import (
    ANSWER_BYTES,
    Failed,
    Gone,
    RetryLater,
    Succeeded,
    send,
)

LOOPBACK = parse_networks(["127.0.0.0/8"])
BODY = json.dumps({"type": "bill.approved", "data": {"total": "5000.00"}}).encode()


def answers(*addresses: str) -> Any:
    """A resolver answering ``addresses`` for any host, as ``getaddrinfo`` shapes them."""

    def resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolver


def signed(secret: str) -> dict[str, str]:
    return signature_headers([secret], "msg_01", int(time.time()), BODY)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("https://inside.test:{port}/in", ("127.0.0.1",)),
        ("https://mixed.test:{port}/in", ("8.8.8.8", "127.0.0.1")),
        ("http://127.0.0.1:{port}/in", ()),
        ("https://0x7f000001:{port}/in", ()),
        ("https://2130706433:{port}/in", ()),
        ("https://0177.0.0.1:{port}/in", ()),
        ("https://127.1:{port}/in", ()),
        ("https://[::ffff:127.0.0.1]:{port}/in", ()),
    ],
)
def test_a_refused_address_raises_and_is_never_connected_to(
    receiver: Receiver, url: str, resolved: tuple[str, ...]
) -> None:
    # given a listener on 127.0.0.1 and no allowed networks
    # when a message is sent to a URL that is, or resolves to, that address
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1|7f00:1") as refused:
        send(
            url.format(port=receiver.port),
            BODY,
            signed(generate_secret()),
            allowed_networks=(),
            resolver=answers(*resolved),
        )
    # then the reason names the range and the listener saw no connection at all
    assert "loopback 127.0.0.0/8" in refused.value.reason
    receiver.settle()
    assert receiver.connections == []


def test_plain_http_outside_the_allowed_networks_is_refused_unconnected(
    receiver: Receiver,
) -> None:
    # 127.0.0.1 is allowed, 8.8.8.8 is public: fine for https, not for plain http
    with pytest.raises(WebhookUrlRefused, match=r"plain http to 8\.8\.8\.8"):
        send(
            f"http://hooks.test:{receiver.port}/",
            BODY,
            {},
            allowed_networks=LOOPBACK,
            resolver=answers("127.0.0.1", "8.8.8.8"),
        )
    receiver.settle()
    assert receiver.connections == []


def test_inside_the_allowed_networks_the_signed_message_arrives(receiver: Receiver) -> None:
    # given a receiver answering 200 with a long body
    receiver.answer = lambda _request: Answer(200, body=b"a" * 1000 + b"b" * 4000)
    secret = generate_secret()
    # when a signed message is sent to a name resolving to it, inside the allowed networks
    delivery = send(
        f"http://Hooks.Test:{receiver.port}/in?x=1",
        BODY,
        signed(secret),
        allowed_networks=LOOPBACK,
        resolver=answers("127.0.0.1"),
    )
    # then it arrived once, verifiable with the official library, Host from the URL
    [request] = receiver.requests
    assert request.path == "/in?x=1"
    assert request.headers["host"] == f"hooks.test:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    Webhook(secret).verify(request.body, request.headers)
    assert request.body == BODY
    # and the result carries the status, the time, the first 1 KiB and the address
    assert delivery.outcome == Succeeded()
    assert delivery.status == 200
    assert delivery.answer == b"a" * 1000 + b"b" * (ANSWER_BYTES - 1000)
    assert delivery.address == "127.0.0.1"
    assert 0 < delivery.duration < 5


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Receiver) -> None:
    with Receiver() as elsewhere:
        receiver.answer = lambda _request: Answer(
            302, headers={"Location": f"http://127.0.0.1:{elsewhere.port}/stolen"}
        )
        delivery = send(
            f"http://127.0.0.1:{receiver.port}/in",
            BODY,
            {},
            allowed_networks=LOOPBACK,
        )
        elsewhere.settle()
        assert elsewhere.connections == []
    assert isinstance(delivery.outcome, Failed)
    assert "302" in delivery.outcome.reason
    assert "not followed" in delivery.outcome.reason
    assert delivery.status == 302
    assert len(receiver.requests) == 1


def test_a_name_that_rebinds_after_the_check_still_reaches_only_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a listener on 127.0.0.1 (allowed) and one on the same port of 127.0.0.2 (not)
    with Receiver("127.0.0.1") as checked, Receiver("127.0.0.2", checked.port) as inside:
        # and a DNS that answers the allowed address first, then the refused one
        real_getaddrinfo = socket.getaddrinfo
        asked: list[str] = []

        def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != "rebind.test":
                return real_getaddrinfo(host, port, *args, **kwargs)
            asked.append(host)
            address = "127.0.0.1" if len(asked) == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        # when a message is sent with the default resolver (which is the rebinding one)
        delivery = send(
            f"http://rebind.test:{checked.port}/in",
            BODY,
            {},
            allowed_networks=parse_networks(["127.0.0.1/32"]),
        )
        inside.settle()
        # then only the checked address was connected to, and the name resolved once
        assert inside.connections == []
        assert len(checked.requests) == 1
        assert delivery.address == "127.0.0.1"
        assert delivery.outcome == Succeeded()
        assert asked == ["rebind.test"]


def test_https_by_pinned_address_carries_the_url_host_as_sni_and_host(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path, "hooks.test")
    with Receiver(tls=certificates.server_context()) as receiver:
        secret = generate_secret()
        delivery = send(
            f"https://hooks.test:{receiver.port}/in",
            BODY,
            signed(secret),
            allowed_networks=LOOPBACK,
            resolver=answers("127.0.0.1"),
            ssl_context=certificates.client_context(),
        )
        assert delivery.outcome == Succeeded(), delivery
        assert delivery.address == "127.0.0.1"
        assert receiver.sni_names == ["hooks.test"]
        [request] = receiver.requests
        assert request.headers["host"] == f"hooks.test:{receiver.port}"
        Webhook(secret).verify(request.body, request.headers)


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("other.test", True),  # a certificate for another name
        ("hooks.test", False),  # a CA the sender does not trust
    ],
)
def test_https_checks_the_certificate_against_the_url_host(
    tmp_path: Path, host: str, trusted: bool
) -> None:
    certificates = make_certificates(tmp_path, "hooks.test")
    with Receiver(tls=certificates.server_context()) as receiver:
        delivery = send(
            f"https://{host}:{receiver.port}/in",
            BODY,
            {},
            allowed_networks=LOOPBACK,
            resolver=answers("127.0.0.1"),
            ssl_context=certificates.client_context() if trusted else None,
        )
        assert isinstance(delivery.outcome, Failed), delivery
        assert "CERTIFICATE_VERIFY_FAILED" in delivery.outcome.reason
        assert delivery.status is None
        assert receiver.requests == []


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Answer(200), Succeeded()),
        (Answer(204, body=b""), Succeeded()),
        (Answer(410), Gone()),
        (Answer(429, headers={"Retry-After": "7"}), RetryLater(7.0)),
        (Answer(503), RetryLater(None)),
        (Answer(502, headers={"Retry-After": "soon"}), RetryLater(None)),
        (Answer(504, headers={"Retry-After": "2"}), RetryLater(2.0)),
        (Answer(500), Failed("answered 500")),
        (Answer(404), Failed("answered 404")),
        (Answer(400), Failed("answered 400")),
    ],
)
def test_each_answer_is_classified(receiver: Receiver, answer: Answer, outcome: Any) -> None:
    receiver.answer = lambda _request: answer
    delivery = send(f"http://127.0.0.1:{receiver.port}/", BODY, {}, allowed_networks=LOOPBACK)
    assert delivery.outcome == outcome
    assert delivery.status == answer.status
    assert delivery.answer == answer.body


def test_no_answer_within_the_timeout_is_a_failure(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(200, delay=3.0)
    delivery = send(
        f"http://127.0.0.1:{receiver.port}/", BODY, {}, allowed_networks=LOOPBACK, timeout=0.5
    )
    assert delivery.outcome == Failed("no answer within 0.5s")
    assert delivery.status is None
    assert 0.4 < delivery.duration < 1.5


def test_an_answer_dripping_bytes_is_cut_at_the_timeout_in_total(receiver: Receiver) -> None:
    # given an answer whose every byte arrives well within a read timeout, but slowly
    receiver.answer = lambda _request: Answer(200, body=b"z" * 2000, drip=0.02)
    started = time.monotonic()
    delivery = send(
        f"http://127.0.0.1:{receiver.port}/", BODY, {}, allowed_networks=LOOPBACK, timeout=0.6
    )
    # then the reading stops when the message's time is up, the status stands
    assert time.monotonic() - started < 1.5
    assert delivery.outcome == Succeeded()
    assert 0 < len(delivery.answer) < ANSWER_BYTES
    assert set(delivery.answer) == {ord("z")}


def test_a_read_waiting_past_the_deadline_is_cut_at_the_deadline(receiver: Receiver) -> None:
    # given an answer whose second byte comes 1.6 s in: within a 1 s read timeout of the
    # first byte, but past a 1 s deadline for the whole message
    receiver.answer = lambda _request: Answer(200, body=b"zz", delay=0.7, drip=0.9)
    delivery = send(
        f"http://127.0.0.1:{receiver.port}/", BODY, {}, allowed_networks=LOOPBACK, timeout=1.0
    )
    # then the read waits only for what is left of the deadline
    assert delivery.duration < 1.4
    assert delivery.outcome == Succeeded()
    assert delivery.answer == b"z"


def test_the_next_checked_address_is_tried_when_one_does_not_answer(receiver: Receiver) -> None:
    delivery = send(
        f"http://hooks.test:{receiver.port}/",
        BODY,
        {},
        allowed_networks=LOOPBACK,
        resolver=answers("127.0.0.3", "127.0.0.1"),  # nothing listens on 127.0.0.3
    )
    assert delivery.address == "127.0.0.1"
    assert delivery.outcome == Succeeded()


def test_a_host_that_does_not_resolve_is_a_failure_without_a_connection() -> None:
    def failing(host: str, port: int) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    delivery = send("https://nowhere.test/", BODY, {}, allowed_networks=(), resolver=failing)
    assert isinstance(delivery.outcome, Failed)
    assert "cannot resolve nowhere.test" in delivery.outcome.reason
    assert (delivery.status, delivery.address) == (None, None)


def test_the_sender_owns_host_length_and_encoding(receiver: Receiver) -> None:
    send(
        f"http://127.0.0.1:{receiver.port}/",
        BODY,
        {"Host": "evil.test", "Content-Length": "1", "X-Extra": "kept"},
        allowed_networks=LOOPBACK,
    )
    [request] = receiver.requests
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-length"] == str(len(BODY))
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["x-extra"] == "kept"
    assert ipaddress.ip_address(request.headers["host"].split(":")[0]).is_loopback
