"""Read and write shapes of the admin API."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _a_date(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


def _a_datetime(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE.match(value)):
        return value
    raise ValueError("expected a date (YYYY-MM-DD) or an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SSZ)")


def _in_utc_when_naive(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A day, written YYYY-MM-DD: a number is not read as a timestamp.
IsoDate = Annotated[date, BeforeValidator(_a_date)]
#: A moment, written as an ISO 8601 date or date-time; without an offset it is UTC.
IsoDatetime = Annotated[datetime, BeforeValidator(_a_datetime), AfterValidator(_in_utc_when_naive)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    replay: int
    task_id: str | None
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    outcome: str
    error_class: str | None
    error_message: str | None
    retry_at: datetime | None


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    source_id: str | None
    provider: str
    type: str
    external_id: str | None
    occurred_at: datetime | None
    received_at: datetime
    status: str
    attempts: int
    replays: int
    next_attempt_at: datetime | None
    finished_at: datetime | None
    dead_at: datetime | None
    dead_reason: str | None
    last_error: str | None
    caused_by: str | None
    actioned_at: datetime | None


class EventDetail(EventPublic):
    headers: dict[str, Any]
    payload: Any
    history: list[AttemptPublic]


class ReplayRequest(Strict):
    event_ids: list[str] = Field(default_factory=list, max_length=10_000)
    source_id: str | None = None
    type: str | None = None
    error_contains: str | None = None
    since: IsoDatetime | None = None
    until: IsoDatetime | None = None
    all: bool = Field(False, description="Replay every dead letter when no filter is given.")
    dry_run: bool = False


class ReplayResult(BaseModel):
    dry_run: bool
    matched: int
    replayed: list[str]


class SourceCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    provider: str = "generic"
    secret: str | None = Field(None, description="Generated when omitted; returned only now.")
    disabled_notification_user_ids: list[str] = Field(
        default_factory=list, description="Users emailed if the source disables itself."
    )


class SourceUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    disabled_notification_user_ids: list[str] | None = None


class SourcePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    provider: str
    enabled: bool
    consecutive_errors: int
    disabled_at: datetime | None
    disabled_reason: str | None
    disabled_notification_user_ids: list[str]
    created_at: datetime
    webhook_path: str = ""


class SourceCreated(SourcePublic):
    secret: str = Field(description="Shown once; store it in the sender's configuration.")
