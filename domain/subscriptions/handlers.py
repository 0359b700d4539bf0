"""The handlers: one per provider and event type, all applying the event's facts."""

from __future__ import annotations

from sqlmodel import Session

from domain.errors import PermanentError
from domain.eventlog import append_internal
from domain.handlers import InboundEvent, registry
from domain.integrations.errors import IntegrationError
from domain.retry import Decision, GiveUp
from domain.subscriptions.facts import CUSTOMER_EVENTS, SUBSCRIPTION_EVENTS, Facts, read
from domain.subscriptions.projection import apply_facts


def read_facts(event: InboundEvent) -> Facts:
    try:
        return read(event.provider, event.type, event.id, event.payload)
    except (ValueError, TypeError, AttributeError) as exc:
        raise PermanentError(
            f"{event.provider} {event.type} event {event.external_id}: {exc}"
        ) from exc


def apply_event(session: Session, event: InboundEvent) -> None:
    apply_facts(session, event.org_id, read_facts(event))


def record_mapping_error(
    session: Session, event: InboundEvent, error: BaseException, decision: Decision
) -> None:
    """A subscription that cannot be placed ends dead and logs the product's error event."""
    if isinstance(decision, GiveUp) and isinstance(error, IntegrationError):
        append_internal(
            session,
            org_id=event.org_id,
            type=error.event_type,
            caused_by=event.id,
            payload={
                "event_id": event.id,
                "source_id": event.source_id,
                "provider": event.provider,
                "message": str(error),
            },
        )


for _provider, _types in {**CUSTOMER_EVENTS}.items():
    for _type in sorted(_types | SUBSCRIPTION_EVENTS[_provider]):
        registry.register(_provider, _type, name=f"subscriptions.{_provider}.{_type}")(apply_event)
        registry.on_failure(_provider, _type)(record_mapping_error)
