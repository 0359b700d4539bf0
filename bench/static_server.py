"""The load generator's ceiling: the cheapest server that still speaks HTTP/1.1 keep-alive.

One process, uvloop, httptools' C parser, and the same fixed 202 for every request, with
no ASGI, no framework and no JSON parsing. What a load generator reaches against it is
what it could drive at most on this machine.

    python -m bench.static_server --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httptools
import uvloop

RESPONSE = (
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
    b'content-length: 23\r\n\r\n{"event_id":"evt_bare"}'
)


class StaticProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
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
            self.transport.write(RESPONSE)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StaticProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
