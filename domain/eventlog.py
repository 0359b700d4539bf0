"""Reading and appending the event log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from domain.clock import utcnow
from domain.errors import NotFound
from domain.events import Attempt, Event, EventStatus
from domain.ids import new_id
from domain.providers.base import Envelope, UnacceptableEvent
from domain.storable import unstorable

#: Bounds on what a webhook may carry (the README's "Limits"); past them intake answers 400.
MAX_EXTERNAL_ID_CHARS = 255  # the event.external_id column; longer ids are refused, never cut
MAX_TYPE_CHARS = 200  # the event.type column
MAX_JSON_DEPTH = 64  # nested arrays and objects in a body
#: Integers in a body: Python's own limit for converting digits to an int.
MAX_INT_DIGITS = 4300


def new_event_id() -> str:
    return new_id("evt")


def parse_payload(body: bytes) -> Any:
    """The JSON of a webhook body, or ``UnacceptableEvent`` saying why not: not UTF-8, not
    JSON (with the position), nested deeper than ``MAX_JSON_DEPTH``, an integer of more
    than ``MAX_INT_DIGITS`` digits. What parses here parses again in a worker."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnacceptableEvent(
            "invalid_json", f"the body is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnacceptableEvent(
            "invalid_json",
            f"the body is not JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno} (char {exc.pos})",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # an integer past the digit limit
        raise UnacceptableEvent(
            "invalid_json", f"the body holds an integer of more than {MAX_INT_DIGITS} digits"
        ) from None
    if _depth_over(payload, MAX_JSON_DEPTH):
        raise _too_deep()
    return payload


def _too_deep() -> UnacceptableEvent:
    return UnacceptableEvent(
        "invalid_json", f"the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
    )


def _depth_over(payload: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in value if isinstance(child, dict | list))
    return False


def storable_text(value: str, field: str, limit: int) -> str:
    """``value`` unchanged if the log can hold it, else ``UnacceptableEvent``: PostgreSQL
    text refuses NUL, UTF-8 refuses lone surrogates (a JSON ``\\ud800``), and a value
    over the column's width would be cut and then collide with another."""
    if len(value) > limit:
        raise UnacceptableEvent(
            "invalid_event", f"the {field} is {len(value)} characters; at most {limit} are kept"
        )
    reason = unstorable(value)
    if reason:
        raise UnacceptableEvent("invalid_event", f"the {field} {reason}")
    return value


def inbound_row(
    *,
    org_id: str,
    source_id: str,
    provider: str,
    envelope: Envelope,
    body: bytes,
    headers: dict[str, str],
    received_at: datetime,
    held: bool,
) -> dict[str, Any]:
    """The row intake inserts for one webhook (a plain dict, ready for a bulk insert).
    Raises ``UnacceptableEvent`` for an id or type the log cannot hold as sent."""
    external_id = envelope.external_id
    return {
        "id": new_event_id(),
        "org_id": org_id,
        "source_id": source_id,
        "provider": provider,
        "type": storable_text(envelope.type, "event type", MAX_TYPE_CHARS),
        "external_id": storable_text(external_id, "event id", MAX_EXTERNAL_ID_CHARS)
        if external_id
        else None,
        "occurred_at": envelope.occurred_at,
        "received_at": received_at,
        "payload": body.decode("utf-8"),
        "headers": headers,
        "status": EventStatus.HELD if held else EventStatus.PENDING,
        "attempts": 0,
        "replays": 0,
    }


INTERNAL_PROVIDER = "meterbridge"
#: Key in ``Session.info`` listing the (id, type) of events appended in the session.
APPENDED = "meterbridge.appended"


def append_internal(
    session: Session,
    *,
    org_id: str,
    type: str,
    payload: dict[str, Any],
    caused_by: str | None = None,
    external_id: str | None = None,
) -> Event:
    """Record an internal change (a config disabled, a bill approved, ...) in the log. It
    is processed like any event; ``caused_by`` names the event whose processing made it,
    so the task that processed that one can publish it at once. ``external_id``: the
    event's own key, when it has one (a scheduled event's rule and due time)."""
    now = utcnow()
    event = Event(
        id=new_event_id(),
        org_id=org_id,
        provider=INTERNAL_PROVIDER,
        type=type,
        external_id=external_id,
        occurred_at=now,
        received_at=now,
        payload=json.dumps(payload, separators=(",", ":"), default=str),
        headers={},
        caused_by=caused_by,
    )
    session.add(event)
    session.flush()
    session.info.setdefault(APPENDED, []).append((event.id, event.type))
    return event


@dataclass(frozen=True, slots=True)
class EventFilter:
    org_id: str
    status: str | None = None
    type: str | None = None
    source_id: str | None = None
    before: str | None = None  # an event id: page backwards from it


def list_events(session: Session, filt: EventFilter, *, limit: int = 50) -> list[Event]:
    statement = select(Event).where(col(Event.org_id) == filt.org_id)
    if filt.status:
        statement = statement.where(col(Event.status) == filt.status)
    if filt.type:
        statement = statement.where(col(Event.type) == filt.type)
    if filt.source_id:
        statement = statement.where(col(Event.source_id) == filt.source_id)
    if filt.before:
        statement = statement.where(col(Event.id) < filt.before)
    return list(session.exec(statement.order_by(col(Event.id).desc()).limit(limit)))


def get_event(session: Session, org_id: str, event_id: str) -> tuple[Event, list[Attempt]]:
    event = session.get(Event, event_id)
    if event is None or event.org_id != org_id:
        raise NotFound(f"no event {event_id!r}")
    attempts = session.exec(
        select(Attempt).where(col(Attempt.event_id) == event_id).order_by(col(Attempt.id))
    )
    return event, list(attempts)


def mark_actioned(session: Session, org_id: str, event_id: str, by: str) -> Event:
    event, _ = get_event(session, org_id, event_id)
    if event.actioned_at is None:
        event.actioned_at = utcnow()
        event.actioned_by = by
        session.add(event)
    return event
