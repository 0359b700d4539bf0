from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC; the tables store it as UTC whatever the database."""
    return datetime.now(UTC)
