"""Events as Chargebee, Stripe and Paddle send them, signed with their own schemes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from domain.providers.paddle import sign as paddle_sign
from domain.providers.stripe import sign as stripe_sign

T0 = 1_790_000_000  # 2026-09-21


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# --- Chargebee -------------------------------------------------------------------------------


def chargebee_subscription(
    event_type: str,
    sub: str,
    customer: str,
    plan: str,
    *,
    at: int,
    status: str = "active",
    cancelled_at: int | None = None,
    term_end: int | None = None,
    event_id: str | None = None,
    with_customer: bool = True,
    customer_details: bool = True,
) -> dict[str, Any]:
    """``customer_details=False``: the customer object carries only its id."""
    subscription = {
        "id": sub,
        "customer_id": customer,
        "status": status,
        "started_at": T0,
        "current_term_end": term_end,
        "resource_version": at * 1000,
        "subscription_items": [{"item_price_id": plan, "item_type": "plan", "quantity": 1}],
    }
    if cancelled_at:
        subscription["cancelled_at"] = cancelled_at
    content: dict[str, Any] = {"subscription": subscription}
    if with_customer and not customer_details:
        content["customer"] = {"id": customer}
    elif with_customer:
        content["customer"] = {
            "id": customer,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": f"{customer}@example.com",
            "resource_version": T0 * 1000,
        }
    return {
        "id": event_id or f"ev_{uuid.uuid4().hex[:16]}",
        "occurred_at": at,
        "event_type": event_type,
        "api_version": "v2",
        "object": "event",
        "content": content,
    }


def chargebee_customer(customer: str, *, at: int, name: str = "Initech") -> dict[str, Any]:
    return {
        "id": f"ev_{uuid.uuid4().hex[:16]}",
        "occurred_at": at,
        "event_type": "customer_created",
        "api_version": "v2",
        "object": "event",
        "content": {
            "customer": {
                "id": customer,
                "company": name,
                "email": f"billing@{customer}.example",
                "resource_version": at * 1000,
            }
        },
    }


def chargebee_headers(secret: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "authorization": "Basic " + base64.b64encode(secret.encode()).decode(),
    }


# --- Stripe ----------------------------------------------------------------------------------


def stripe_subscription(
    event_type: str,
    sub: str,
    customer: str,
    price: str,
    *,
    at: int,
    status: str = "active",
    ended_at: int | None = None,
    cancel_at: int | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    obj = {
        "id": sub,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "start_date": T0,
        "ended_at": ended_at,
        "cancel_at": cancel_at,
        "items": {"object": "list", "data": [{"id": f"si_{sub}", "price": {"id": price}}]},
    }
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": event_type,
        "created": at,
        "data": {"object": obj},
        "livemode": False,
    }


def stripe_customer(customer: str, *, at: int, name: str = "Initech") -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": "customer.created",
        "created": at,
        "data": {
            "object": {
                "id": customer,
                "object": "customer",
                "name": name,
                "email": f"billing@{customer}.example",
            }
        },
    }


def stripe_headers(secret: str, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "stripe-signature": stripe_sign(secret, int(time.time()), body),
    }


# --- Paddle ----------------------------------------------------------------------------------


def paddle_subscription(
    event_type: str,
    sub: str,
    customer: str,
    price: str,
    *,
    at: float,
    status: str = "active",
    canceled_at: float | None = None,
    cancel_scheduled_at: float | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    data = {
        "id": sub,
        "customer_id": customer,
        "status": status,
        "started_at": iso(T0),
        "canceled_at": iso(canceled_at) if canceled_at else None,
        "scheduled_change": (
            {"action": "cancel", "effective_at": iso(cancel_scheduled_at)}
            if cancel_scheduled_at
            else None
        ),
        "items": [{"price": {"id": price}, "quantity": 1}],
    }
    return {
        "event_id": event_id or f"evt_{uuid.uuid4().hex[:26]}",
        "event_type": event_type,
        "occurred_at": iso(at),
        "notification_id": f"ntf_{uuid.uuid4().hex[:26]}",
        "data": data,
    }


def paddle_headers(secret: str, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "paddle-signature": paddle_sign(secret, int(time.time()), body),
    }


def body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()
