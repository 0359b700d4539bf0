"""The people of an organisation: who gets told when something needs them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from domain.clock import utcnow
from domain.errors import Conflict, InvalidInput
from domain.ids import new_id
from domain.scoping import add_unique, owned


class User(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("org_id", "email", name="uq_user_org_email"),)

    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow)


def create_user(session: Session, org_id: str, name: str, email: str) -> User:
    """A new user; the email (compared in lower case) is unique in the organisation (else
    ``Conflict``, also when another request adds the same email at the same moment)."""
    email = email.strip().lower()
    duplicate = Conflict(f"a user with email {email!r} already exists")
    if session.exec(select(User).where(User.org_id == org_id, User.email == email)).first():
        raise duplicate
    user = User(org_id=org_id, name=name, email=email)
    add_unique(session, user, duplicate)
    return user


def list_users(session: Session, org_id: str) -> list[User]:
    return list(session.exec(select(User).where(User.org_id == org_id).order_by(col(User.id))))


def get_user(session: Session, org_id: str, user_id: str) -> User:
    return owned(session, User, org_id, user_id, "user")


def check_users(
    session: Session,
    org_id: str,
    user_ids: list[str],
    field: str = "disabled_notification_user_ids",
) -> None:
    """Every id must be one of the organisation's users."""
    found = existing_user_ids(session, org_id, user_ids)
    missing = [user_id for user_id in user_ids if user_id not in found]
    if missing:
        raise InvalidInput(f"unknown user ids: {', '.join(missing)}", field=field)


def existing_user_ids(session: Session, org_id: str, user_ids: list[str]) -> set[str]:
    if not user_ids:
        return set()
    statement = select(User.id).where(User.org_id == org_id, col(User.id).in_(user_ids))
    return set(session.exec(statement))
