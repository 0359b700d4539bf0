from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Envelope:
    """What intake needs to know of an event before any domain work."""

    external_id: str | None
    type: str
    occurred_at: datetime | None


class Provider(Protocol):
    name: str
    #: Request headers kept with the event (lower case); signature headers are redacted.
    kept_headers: tuple[str, ...]
    redacted_headers: tuple[str, ...]

    def generate_secret(self) -> str: ...

    def check_secret(self, secret: str) -> None:
        """Raise ``InvalidInput`` when the secret cannot be used by this provider."""

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        """Raise ``SignatureError`` unless the request is authentic and fresh."""

    def envelope(self, headers: Mapping[str, str], payload: Any) -> Envelope: ...


def kept_headers(provider: Provider, headers: Mapping[str, str]) -> dict[str, str]:
    kept = {name: headers[name] for name in provider.kept_headers if name in headers}
    for name in provider.redacted_headers:
        if name in headers:
            kept[name] = "[redacted]"
    return kept
