"""An answer that cannot be read is a transient error, never an exception the retry
policy does not know: a compressed body that does not decompress, or a ``200`` from
Xero's ``/connections`` that is not JSON (a proxy's page, say)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from domain.clock import utcnow
from domain.connections.tokens import TokenSet
from domain.errors import TransientError
from domain.settings import Settings
from tests.support.processes import free_port, serve_in_thread, stop_server
from workers.connections.http import AuthorizedClient
from workers.destinations.xero.client import XeroClient
from workers.destinations.xero.connect import _tenant


class _Token:
    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        return "Bearer access-0", 0


def test_a_body_that_does_not_decompress_is_transient() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip")

    http = AuthorizedClient(
        "https://api.example", _Token(), 5.0, title="Xero", transport=httpx.MockTransport(answer)
    )
    with http, pytest.raises(TransientError, match="could not be read: DecodingError"):
        XeroClient(http).create_invoice({"Type": "ACCREC"}, "key-1")


@pytest.fixture
def connections_answering_html() -> Iterator[str]:
    async def connections(request: Request) -> PlainTextResponse:
        return PlainTextResponse("<html>Service moved</html>", media_type="text/html")

    port = free_port()
    server = serve_in_thread(Starlette(routes=[Route("/connections", connections)]), port)
    yield f"http://127.0.0.1:{port}"
    stop_server(server)


def test_connections_answering_no_json_is_transient(connections_answering_html: str) -> None:
    settings = Settings(_env_file=None, xero_api_base=connections_answering_html)  # type: ignore[call-arg]
    tokens = TokenSet("access-0", utcnow() + timedelta(hours=1), "refresh-0")
    with pytest.raises(TransientError, match="no JSON"):
        _tenant(settings, None, tokens)
