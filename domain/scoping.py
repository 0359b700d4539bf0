"""Every read of a customer's object is scoped to its organisation."""

from __future__ import annotations

from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from domain.errors import Conflict, NotFound


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


def add_unique(session: Session, obj: object, duplicate: Conflict) -> None:
    """Add and flush ``obj``; when a uniqueness rule refuses it (another request saved the
    same key since it was checked), raise ``duplicate``, the transaction still usable."""
    try:
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except sa.exc.IntegrityError:
        raise duplicate from None
