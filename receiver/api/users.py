from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from domain.users import create_user, get_user, list_users
from receiver.api.answers import answers
from receiver.api.deps import OrgId, SessionDep
from receiver.api.schemas import Strict

router = APIRouter(prefix="/users", tags=["users"])


class UserCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    email: str
    created_at: datetime


@router.get("", response_model=list[UserPublic])
def list_(org_id: OrgId, session: SessionDep) -> list[UserPublic]:
    return [UserPublic.model_validate(user) for user in list_users(session, org_id)]


@router.post("", response_model=UserPublic, status_code=201, responses=answers(409))
def create(body: UserCreate, org_id: OrgId, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(create_user(session, org_id, body.name, str(body.email)))


@router.get("/{user_id}", response_model=UserPublic, responses=answers(404))
def show(user_id: str, org_id: OrgId, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(get_user(session, org_id, user_id))
