"""The receiver's HTTP protocol: uvicorn's httptools parser with the limits a server
facing the internet needs, which uvicorn itself does not have.

- **Headers in time.** A request's headers must arrive within
  ``METERBRIDGE_RECEIVER_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection,
  for the first request): a client that trickles them (slowloris) gets 408 and is closed.
- **Headers of bounded size.** More than ``METERBRIDGE_RECEIVER_MAX_HEADER_BYTES`` of
  request line and headers: 431, closed. The parser keeps what it has read, so an unbounded
  header would be unbounded memory.
- **A body that keeps coming.** Once the headers are in, each piece of the body must follow
  the last within ``METERBRIDGE_RECEIVER_BODY_TIMEOUT_SECONDS``: 408, closed. (The body's
  size is bounded by the webhook route itself, ``METERBRIDGE_MAX_BODY_BYTES``.)
- **Connections.** Past ``METERBRIDGE_RECEIVER_MAX_CONNECTIONS`` open connections in one
  process, a new one gets 503 with ``Retry-After`` and is closed at once, so it does not
  hold a file descriptor.
- **uvicorn's own answers** (a malformed request) are JSON ``{code, message}`` like every
  other error of the receiver, not text.

Idle keep-alive connections are closed by uvicorn after ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from domain.settings import Settings, load_settings

RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_connections=settings.receiver_max_connections,
            max_header_bytes=settings.receiver_max_header_bytes,
            header_timeout_seconds=settings.receiver_header_timeout_seconds,
            body_timeout_seconds=settings.receiver_body_timeout_seconds,
        )


@cache
def _limits() -> ServerLimits:
    # uvicorn builds the protocol itself (in each server process), so the limits come
    # from the same settings the process serves with.
    return ServerLimits.of(load_settings())


def error_bytes(status: HTTPStatus, code: str, message: str, *extra_headers: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, in the receiver's
    ``{code, message}`` shape."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *extra_headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _headers_done = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > _limits().max_connections:
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too_many_connections",
                "the receiver has as many connections open as it allows; retry shortly",
                f"retry-after: {RETRY_AFTER_SECONDS}",
            )
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or self._headers_done:
            return
        self._header_bytes += len(data)
        if self._header_bytes > _limits().max_header_bytes:
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                f"the request line and headers exceed {_limits().max_header_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a keep-alive connection's next request
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._restart_timer(_limits().body_timeout_seconds, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._restart_timer(_limits().body_timeout_seconds, self._body_timed_out)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(HTTPStatus.BAD_REQUEST, "bad_http_request", msg)

    def _await_headers(self) -> None:
        self._headers_done = False
        self._header_bytes = 0
        self._restart_timer(_limits().header_timeout_seconds, self._headers_timed_out)

    def _headers_timed_out(self) -> None:
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            "header_timeout",
            f"the request's headers did not arrive within {_limits().header_timeout_seconds}s",
        )

    def _body_timed_out(self) -> None:
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            "body_timeout",
            f"no part of the request's body arrived for {_limits().body_timeout_seconds}s",
        )

    def _refuse(self, status: HTTPStatus, code: str, message: str, *headers: str) -> None:
        self._cancel_timer()
        # Before this request's headers are in, self.cycle is still the previous request's.
        answered = self._headers_done and self.cycle is not None and self.cycle.response_started
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application's answer would come too late
        self.logger.warning("refused a connection: %s", code)
        if self.transport.is_closing():
            return
        if not answered:  # one response per request: after the application's, only close
            self.transport.write(error_bytes(status, code, message, *headers))
        self.transport.close()

    def _restart_timer(self, seconds: float, callback: object) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, callback)  # type: ignore[arg-type]

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
