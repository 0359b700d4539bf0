"""The event catalogue: the system events a notification rule can reference."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from domain.catalogue import EventType, event_types, get_event_type
from receiver.api.answers import answers
from receiver.api.deps import current_org

# Every organisation sees the same catalogue, but only with a key, like every route.
router = APIRouter(prefix="/event-types", tags=["event types"], dependencies=[Depends(current_org)])


class EventTypePublic(BaseModel):
    name: str = Field(description="e.g. `bill.approved`.")
    version: int = Field(description="Goes up when a field changes meaning or goes away.")
    description: str
    json_schema: dict[str, Any] = Field(
        alias="schema",
        description="JSON Schema of the event's payload; money is decimal text "
        '(`"format": "decimal"`).',
    )

    @classmethod
    def of(cls, event_type: EventType) -> EventTypePublic:
        return cls.model_validate(
            {
                "name": event_type.name,
                "version": event_type.version,
                "description": event_type.description,
                "schema": event_type.schema,
            }
        )


@router.get("", response_model=list[EventTypePublic], response_model_by_alias=True)
def list_() -> list[EventTypePublic]:
    return [EventTypePublic.of(event_type) for event_type in event_types()]


@router.get(
    "/{name}", response_model=EventTypePublic, response_model_by_alias=True, responses=answers(404)
)
def show(name: str) -> EventTypePublic:
    return EventTypePublic.of(get_event_type(name))
