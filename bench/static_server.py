"""The load generator's ceiling: the cheapest server that still speaks HTTP/1.1 keep-alive.

One process, uvloop, httptools' C parser, and the same fixed answer (202, or ``--status``)
for every request, with no ASGI, no framework and no JSON parsing. What a load generator
reaches against it is what it could drive at most on this machine; ``bench.webhooks``
uses it as the fast receiver webhook messages are delivered to (``--status 200``).

    python -m bench.static_server --port 8002 [--status 200]
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from http import HTTPStatus
from typing import Any

import httptools
import uvloop

BODY = b'{"event_id":"evt_bare"}'


def response(status: int) -> bytes:
    """The fixed answer: ``status`` with a small JSON body."""
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


RESPONSE = response(202)


class StaticProtocol(asyncio.Protocol):
    def __init__(self, answer: bytes = RESPONSE) -> None:
        self.transport: Any = None
        self.answer = answer
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's TCPTransport, a WriteTransport in effect

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(self.answer)


async def serve(port: int, status: int = 202) -> None:
    loop = asyncio.get_running_loop()
    protocol = partial(StaticProtocol, response(status))
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--status", type=int, default=202, help="the status of every answer")
    args = p.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port, args.status))


if __name__ == "__main__":
    main()
