"""What a provider's event says, in one shape for every provider.

Every subscription event carries the whole subscription, so the state after an event does
not depend on the events before it: of all events about one subscription, the one with the
highest ``version`` decides. The version is the provider's resource version (Chargebee) or
the event's occurrence time (Stripe, Paddle), with the event id breaking ties, so
duplicates, late deliveries and reversed order all converge to the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.providers.paddle import parse_time

#: The event types each provider's handlers read; any other type is stored and ignored.
CUSTOMER_EVENTS = {
    "chargebee": {"customer_created"},
    "stripe": {"customer.created"},
    "paddle": set(),
}
SUBSCRIPTION_EVENTS = {
    "chargebee": {
        "subscription_created",
        "subscription_changed",
        "subscription_cancelled",
        "subscription_reactivated",
    },
    "stripe": {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    },
    "paddle": {"subscription.created", "subscription.updated", "subscription.canceled"},
}


@dataclass(frozen=True, slots=True)
class CustomerFact:
    """``name`` None: the event names the customer but states none of its details (a
    Chargebee customer with only an id), so it must not overwrite what is known."""

    provider: str
    customer_id: str
    name: str | None
    email: str | None
    version: str


@dataclass(frozen=True, slots=True)
class SubscriptionFact:
    provider: str
    subscription_id: str
    customer_id: str
    plan_table: str
    plan_external_id: str
    status: str
    start: datetime | None
    end: datetime | None
    version: str


@dataclass(frozen=True, slots=True)
class Facts:
    event_id: str
    customer: CustomerFact | None = None
    subscription: SubscriptionFact | None = None


def read(provider: str, event_type: str, event_id: str, payload: Any) -> Facts:
    """The facts an event states. Raises ``ValueError`` when a field it needs is missing."""
    reader = {"chargebee": _chargebee, "stripe": _stripe, "paddle": _paddle}[provider]
    return reader(event_type, event_id, payload)


def _version(millis: float, event_id: str) -> str:
    return f"{int(millis):016d}:{event_id}"


def _unix(value: Any) -> datetime | None:
    """A provider's unix time; one no calendar holds (10^20) is the event's fault, so a
    ``ValueError`` (permanent: a dead letter with this reason), never a retry."""
    if not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"the event has a time out of range: {value!r}") from None


def _require(mapping: Any, *path: str) -> Any:
    value = mapping
    for key in path:
        if not isinstance(value, dict) or value.get(key) in (None, ""):
            raise ValueError(f"the event has no {'.'.join(path)}")
        value = value[key]
    return value


def _chargebee(event_type: str, event_id: str, payload: Any) -> Facts:
    content = _require(payload, "content")
    occurred_ms = float(payload.get("occurred_at") or 0) * 1000
    customer = None
    if isinstance(content.get("customer"), dict):
        raw = content["customer"]
        name = raw.get("company") or " ".join(
            part for part in (raw.get("first_name"), raw.get("last_name")) if part
        )
        stated = bool(name or raw.get("email"))
        customer = CustomerFact(
            "chargebee",
            str(_require(raw, "id")),
            (name or str(raw["id"])) if stated else None,
            raw.get("email") if stated else None,
            _version(raw.get("resource_version") or occurred_ms, event_id),
        )
    if event_type not in SUBSCRIPTION_EVENTS["chargebee"]:
        return Facts(event_id, customer=customer)
    raw = _require(content, "subscription")
    plans = [i for i in raw.get("subscription_items") or [] if i.get("item_type") == "plan"]
    table, plan = (
        ("item_price", plans[0].get("item_price_id")) if plans else ("plan", raw.get("plan_id"))
    )
    if not plan:
        raise ValueError("the subscription has no plan item")
    status = str(raw.get("status") or "")
    end = None
    if status == "cancelled" or status == "non_renewing":
        end = _unix(raw.get("cancelled_at")) or _unix(raw.get("current_term_end"))
    subscription = SubscriptionFact(
        "chargebee",
        str(_require(raw, "id")),
        str(_require(raw, "customer_id")),
        table,
        str(plan),
        status,
        _unix(raw.get("started_at") or raw.get("start_date") or raw.get("created_at")),
        end,
        _version(raw.get("resource_version") or occurred_ms, event_id),
    )
    return Facts(event_id, customer=customer, subscription=subscription)


def _stripe(event_type: str, event_id: str, payload: Any) -> Facts:
    obj = _require(payload, "data", "object")
    version = _version(float(payload.get("created") or 0) * 1000, event_id)
    if event_type == "customer.created":
        customer_id = str(_require(obj, "id"))
        stated = bool(obj.get("name") or obj.get("email"))
        name = (obj.get("name") or obj.get("email") or customer_id) if stated else None
        return Facts(
            event_id, customer=CustomerFact("stripe", customer_id, name, obj.get("email"), version)
        )
    items = (obj.get("items") or {}).get("data") or []
    price = (items[0].get("price") or {}).get("id") if items else None
    if not price:
        raise ValueError("the subscription has no price")
    customer = obj.get("customer")
    subscriber = customer.get("id") if isinstance(customer, dict) else customer
    subscription = SubscriptionFact(
        "stripe",
        str(_require(obj, "id")),
        str(subscriber),
        "price",
        str(price),
        str(obj.get("status") or ""),
        _unix(obj.get("start_date")),
        _unix(obj.get("ended_at")) or _unix(obj.get("cancel_at")),
        version,
    )
    return Facts(event_id, subscription=subscription)


def _paddle(event_type: str, event_id: str, payload: Any) -> Facts:
    data = _require(payload, "data")
    occurred = parse_time(payload.get("occurred_at"))
    version = _version(occurred.timestamp() * 1_000_000 if occurred else 0, event_id)
    items = data.get("items") or []
    price = (items[0].get("price") or {}).get("id") if items else None
    if not price:
        raise ValueError("the subscription has no price")
    status = str(data.get("status") or "")
    scheduled = data.get("scheduled_change") or {}
    end = parse_time(data.get("canceled_at"))
    if end is None and scheduled.get("action") == "cancel":
        end = parse_time(scheduled.get("effective_at"))
    subscription = SubscriptionFact(
        "paddle",
        str(_require(data, "id")),
        str(_require(data, "customer_id")),
        "price",
        str(price),
        status,
        parse_time(data.get("started_at") or data.get("first_billed_at") or data.get("created_at")),
        end,
        version,
    )
    return Facts(event_id, subscription=subscription)
