"""Calls to a destination on a credential's behalf: each request carries an
``Authorization`` header from the credential's ``Authorizer``; a 401 gets one fresh token
(the refused one's generation is handed back, so the token is refreshed unless another
worker already did) and the request is sent again; a second 401 ends the run
``AUTH_FAILED``. Each request is sent inside its turn (``workers.destinations.turns``)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy.engine import Engine

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed
from domain.secrets import SecretBox
from workers.connections.access import access_token
from workers.connections.connector import Connector

log = structlog.get_logger(__name__)


class Authorizer(Protocol):
    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        """The ``Authorization`` header for a request, and which token it holds (its
        generation). ``refused``: the generation a 401 refused."""


@dataclass(frozen=True)
class BearerAuthorizer:
    """An OAuth 2.0 access token (``workers.connections.access``)."""

    engine: Engine
    box: SecretBox
    credential_id: str
    connector: Connector

    def authorization(self, method: str, url: str, *, refused: int | None) -> tuple[str, int]:
        access = access_token(
            self.engine, self.box, self.credential_id, self.connector, refused=refused
        )
        return f"Bearer {access.token}", access.generation


class Turns(Protocol):
    def call(self) -> AbstractContextManager[None]: ...


class AuthorizedClient:
    def __init__(
        self,
        base_url: str,
        authorizer: Authorizer,
        timeout: float,
        *,
        title: str,
        turns: Turns | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._authorizer = authorizer
        self._turns = turns
        self.title = title
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Accept": "application/json", "User-Agent": "meterbridge", **(headers or {})},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AuthorizedClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = self._http.build_request(method, path, params=params).url
        refused: int | None = None
        for _ in range(2):
            authorization, generation = self._authorizer.authorization(
                method, str(url), refused=refused
            )
            response = self._send(
                method,
                path,
                params,
                json,
                {
                    **(headers or {}),
                    "Authorization": authorization,
                },
            )
            if response.status_code != 401:
                return response
            refused = generation
        raise AuthenticationFailed(
            f"{self.title} refused a fresh access token (401) on {method} {urlsplit(str(url)).path}"
        )

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        turn = self._turns.call() if self._turns is not None else nullcontext()
        with turn:
            try:
                response = self._http.request(
                    method, path, params=params, json=json, headers=headers
                )
            except httpx.TimeoutException:
                raise TransientError(
                    f"{self.title} did not answer {method} {path} in time"
                ) from None
            except httpx.TransportError as exc:
                raise TransientError(f"cannot reach {self.title}: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:  # e.g. a compressed body that does not decompress
                raise TransientError(
                    f"{self.title}'s answer to {method} {path} could not be read: "
                    f"{type(exc).__name__}"
                ) from None
        log.info(
            "destination.call",
            destination=self.title,
            method=method,
            path=path,
            status=response.status_code,
        )
        return response
