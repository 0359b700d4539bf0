"""Sources as intake sees them, cached briefly so a webhook costs no source query.

A stale entry can only mark an event pending instead of held (or the reverse) for a few
seconds; the worker re-checks the source before processing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.providers import Provider, provider_for
from domain.secrets import SecretBox
from domain.sources import Source


@dataclass(frozen=True, slots=True)
class SourceInfo:
    id: str
    org_id: str
    provider: Provider
    secret: str
    enabled: bool


#: The width of source.id; ids are printable ASCII (``src_`` and a ULID).
MAX_SOURCE_ID_CHARS = 40


def _plausible(source_id: str) -> bool:
    return (
        0 < len(source_id) <= MAX_SOURCE_ID_CHARS
        and source_id.isascii()
        and source_id.isprintable()
    )


class SourceCache:
    def __init__(self, engine: Engine, box: SecretBox, *, ttl_seconds: float = 5.0) -> None:
        self._engine = engine
        self._box = box
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, SourceInfo | None]] = {}

    async def get(self, source_id: str) -> SourceInfo | None:
        """The source, or None when there is none. An id no source can have (a NUL, over
        the column's width) is None without a query: the database would refuse it."""
        if not _plausible(source_id):
            return None
        now = time.monotonic()
        cached = self._entries.get(source_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        info = await asyncio.to_thread(self._load, source_id)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[source_id] = (now + self._ttl, info)
        return info

    def _load(self, source_id: str) -> SourceInfo | None:
        with Session(self._engine) as session:
            source = session.get(Source, source_id)
            if source is None:
                return None
            return SourceInfo(
                id=source.id,
                org_id=source.org_id,
                provider=provider_for(source.provider),
                secret=self._box.decrypt(source.secret_ciphertext),
                enabled=source.enabled,
            )
