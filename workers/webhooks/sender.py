"""Sending one outbound webhook message, and nothing but the address that was checked.

    send(url, body, headers, allowed_networks=…)
      parse_url ─▶ resolve the host once (a literal IP is not resolved)
      ─▶ permitted_addresses: every address checked; one refused ─▶ AddressRefused, raised
         before any connection
      ─▶ connect to a checked address (``_PinnedBackend`` is handed the addresses and never
         resolves: a DNS answer that changes after the check cannot redirect the connection)
      ─▶ TLS: SNI and the certificate check are the URL's host; ``Host`` is the URL's
      ─▶ POST, no redirect followed, the first 1 KiB of the answer read, all within
         ``timeout`` in total (``_DeadlineStream`` clamps every socket operation to what is
         left, so an answer dripping a byte at a time cannot hold a worker past it)
      ─▶ Delivery(outcome, status, duration, answer, address)

Built on ``httpcore`` (what httpx sends with), one connection per message: a pooled
connection chosen by address could carry a message to a host whose certificate it never
checked. No proxy from the environment is used: a proxy would do its own resolving.

The outcome, read by the delivery task:

- ``Succeeded``: a 2xx answer.
- ``Gone``: 410, the receiver says the endpoint is gone; disable the destination.
- ``RetryLater(retry_after)``: 429, 502, 503 or 504; the next try waits ``retry_after``
  seconds when the answer said (``Retry-After``), else the schedule's delay.
- ``Failed(reason)``: any other answer (a 3xx included: redirects are not followed), no
  answer in time, a connection or TLS failure, a host that does not resolve. Tried again
  on the schedule.

A refused URL or address is not an outcome but ``WebhookUrlRefused`` / ``AddressRefused``
(permanent errors): no request was made.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import certifi
import httpcore
import httpx
import structlog

from domain.errors import TransientError
from domain.webhooks.addresses import (
    Address,
    Network,
    WebhookUrl,
    parse_url,
    permitted_addresses,
)
from workers.destinations.http import retry_after

log = structlog.get_logger(__name__)

#: How much of an answer is read and kept.
ANSWER_BYTES = 1024
DEFAULT_TIMEOUT = 15.0
USER_AGENT = "meterbridge-webhooks/1"
#: Statuses whose answer asks for a later try, honouring ``Retry-After``.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Request headers the sender owns; a caller's value for them is dropped.
_OWN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)

#: ``socket.getaddrinfo``'s shape: (host, port) → [(family, type, proto, canonname, sockaddr)].
Resolver = Callable[[str, int], Sequence[tuple[Any, ...]]]


@dataclass(frozen=True)
class Succeeded:
    pass


@dataclass(frozen=True)
class Gone:
    pass


@dataclass(frozen=True)
class RetryLater:
    retry_after: float | None


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Succeeded | Gone | RetryLater | Failed


@dataclass(frozen=True)
class Delivery:
    """One attempt: ``status`` None when no answer came; ``duration`` in seconds from the
    first connect to the last byte read; ``answer`` the first 1 KiB of the answer's body;
    ``address`` the address connected to (None when no connection was made)."""

    outcome: Outcome
    status: int | None
    duration: float
    answer: bytes
    address: str | None


class UnresolvableHost(TransientError):
    """The host has no address now (DNS failed or answered nothing)."""


def resolve(url: WebhookUrl, resolver: Resolver | None = None) -> list[Address]:
    """The addresses of ``url``'s host: the literal one, or the resolver's answer (default
    ``socket.getaddrinfo``, looked up at each call)."""
    if url.literal is not None:
        return [url.literal]
    try:
        answers = (resolver or socket.getaddrinfo)(url.host, url.port)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"cannot resolve {url.host}: {exc}") from None
    addresses: list[Address] = []
    for *_, sockaddr in answers:
        host = str(sockaddr[0])
        if len(sockaddr) >= 4 and sockaddr[3] and "%" not in host:
            host = f"{host}%{sockaddr[3]}"  # keep a zone id, so the policy refuses it
        addresses.append(ipaddress.ip_address(host))
    return addresses


def check_url(
    url: str, *, allowed_networks: Sequence[Network], resolver: Resolver | None = None
) -> tuple[WebhookUrl, tuple[Address, ...]]:
    """The parsed URL and the addresses a message to it may connect to, or
    ``WebhookUrlRefused`` / ``AddressRefused`` / ``UnresolvableHost``: what a destination
    is checked with when saved, and every message when sent."""
    parsed = parse_url(url)
    return parsed, permitted_addresses(parsed, resolve(parsed, resolver), allowed_networks)


@cache
def default_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def send(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allowed_networks: Sequence[Network],
    timeout: float = DEFAULT_TIMEOUT,
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Delivery:
    """POST ``body`` with ``headers`` (the signature's among them) to ``url``; see the
    module's docstring. Raises only when the URL or an address is refused."""
    try:
        parsed, addresses = check_url(url, allowed_networks=allowed_networks, resolver=resolver)
    except UnresolvableHost as exc:
        return Delivery(Failed(str(exc)), None, 0.0, b"", None)

    started = time.monotonic()
    backend = _PinnedBackend(parsed.host, addresses, deadline=started + timeout)
    connection = httpcore.HTTPConnection(
        origin=httpcore.Origin(parsed.scheme.encode(), parsed.host.encode(), parsed.port),
        ssl_context=ssl_context or default_ssl_context(),
        network_backend=backend,
    )
    request_url = httpcore.URL(
        scheme=parsed.scheme.encode(),
        host=parsed.host.encode(),
        port=parsed.port,
        target=parsed.target.encode(),
    )
    status: int | None = None
    answer = b""
    response_headers: list[tuple[bytes, bytes]] = []
    failure = "no answer"
    try:
        with connection.stream(
            "POST",
            request_url,
            headers=_request_headers(parsed, headers),
            content=body,
            extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)},
        ) as response:
            status, response_headers = response.status, response.headers
            answer = _first_bytes(response.iter_stream(), ANSWER_BYTES)
    except httpcore.TimeoutException:
        failure = f"no answer within {timeout:g}s"
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        connection.close()
    duration = time.monotonic() - started

    outcome = Failed(failure) if status is None else _classify(status, response_headers)
    delivery = Delivery(outcome, status, duration, answer, backend.used)
    log.info(
        "webhook_sent",
        host=parsed.host,
        address=delivery.address,
        status=status,
        outcome=type(outcome).__name__,
        duration_ms=round(duration * 1000, 1),
    )
    return delivery


def _request_headers(url: WebhookUrl, given: Mapping[str, str]) -> list[tuple[str, str]]:
    headers = [("Host", url.authority)]
    headers += [(k, v) for k, v in given.items() if k.lower() not in _OWN_HEADERS]
    names = {k.lower() for k, _ in headers}
    if "content-type" not in names:
        headers.append(("Content-Type", "application/json"))
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    # identity: the first 1 KiB is kept as sent, and no small answer inflates in memory
    headers += [("Accept-Encoding", "identity"), ("Connection", "close")]
    return headers


def _first_bytes(chunks: Iterable[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes of the body; stops reading there. The status is in hand by
    now, so a body that runs past the deadline or breaks off ends the reading, not the
    attempt."""
    kept = bytearray()
    try:
        for chunk in chunks:
            kept += chunk
            if len(kept) >= limit:
                break
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        pass
    return bytes(kept[:limit])


def _classify(status: int, headers: list[tuple[bytes, bytes]]) -> Outcome:
    if 200 <= status < 300:
        return Succeeded()
    if status == 410:
        return Gone()
    if status in RETRY_STATUSES:
        return RetryLater(retry_after(httpx.Response(status, headers=headers)))
    if 300 <= status < 400:
        location = httpx.Headers(headers).get("location", "")
        return Failed(f"answered {status} (a redirect to {location!r}, not followed)")
    return Failed(f"answered {status}")


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses, in order until one answers, whatever host it is
    asked for; every stream it makes keeps to ``deadline``."""

    def __init__(self, host: str, addresses: Sequence[Address], *, deadline: float) -> None:
        self.host = host
        self.addresses = addresses
        self.deadline = deadline
        self.used: str | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host != self.host:  # only the origin this backend was made for
            raise httpcore.ConnectError(f"not pinned for {host}")
        error: Exception = httpcore.ConnectError(f"no address to connect to for {host}")
        for address in self.addresses:
            try:
                stream = httpcore.SyncBackend().connect_tcp(
                    str(address),
                    port,
                    timeout=_left(self.deadline, timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            self.used = str(address)
            return _DeadlineStream(stream, self.deadline)
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the message's time is up")
    return left if timeout is None else min(timeout, left)
