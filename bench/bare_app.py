"""The intake baseline: a bare ASGI handler that reads the body, parses the same JSON and
answers 202, served by uvicorn with the receiver's settings (``meterbridge receiver``:
one process unless ``--workers``, loop and HTTP parser ``auto``, no access log, no
logging config).

    python -m bench.bare_app --port 8001 [--workers 1]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BODY = b'{"event_id":"evt_bare"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
PROBE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":  # the readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": PROBE_HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    json.loads(b"".join(chunks))
    await send({"type": "http.response.start", "status": 202, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def fastapi_app() -> Any:
    """The same handler as a FastAPI route: the framework the receiver is built on,
    without anything meterbridge does (the issue's "bare FastAPI handler")."""
    api = FastAPI()

    @api.post("/webhooks/{source_id}")
    async def receive(source_id: str, request: Request) -> Response:
        json.loads(await request.body())
        return JSONResponse({"event_id": "evt_bare"}, status_code=202)

    @api.get("/{path:path}")
    async def probe(path: str) -> Response:
        return JSONResponse({})

    return api


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--framework", choices=["asgi", "fastapi"], default="asgi")
    args = p.parse_args()
    # The same call as workers.cli.run.receiver, with this app instead of the receiver's.
    uvicorn.run(
        "bench.bare_app:app" if args.framework == "asgi" else "bench.bare_app:fastapi_app",
        factory=args.framework == "fastapi",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
