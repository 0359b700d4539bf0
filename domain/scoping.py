"""Every read of a customer's object is scoped to its organisation."""

from __future__ import annotations

from typing import Protocol, TypeVar

from sqlmodel import Session

from domain.errors import NotFound


class _Owned(Protocol):
    @property
    def org_id(self) -> str | None: ...


T = TypeVar("T", bound=_Owned)


def owned(session: Session, model: type[T], org_id: str, object_id: str, what: str) -> T:
    """The object if it exists and belongs to ``org_id``; another organisation's object is
    reported exactly like a missing one, so ids leak nothing."""
    found = session.get(model, object_id)
    if found is None or found.org_id != org_id:
        raise NotFound(f"no {what} {object_id!r}")
    return found
