"""A small Paddle Billing API client over httpx: JSON bodies, ``Authorization: Bearer``
with the API key, ``Paddle-Version: 1``, and errors turned into meterbridge's types:

- 429 → ``TooManyRequests`` (a ``TransientError`` with ``Retry-After`` and Paddle's code,
  which says whose limit it was: the client address's or the subscription's immediate
  charges);
- 5xx, timeouts, connection failures, and 409 ``subscription_locked_*`` (a
  subscription is locked for changes in the 30 minutes before it renews) →
  ``TransientError`` (with ``Retry-After``);
- 401 and 403 → ``AuthenticationFailed`` (Paddle answers 403 for a missing, malformed,
  revoked or unpermitted API key, 401 for an expired OAuth token);
- any other 4xx → ``PerformFailed`` carrying Paddle's error code, detail and field errors.

Paddle has no idempotency key, and ``POST /subscriptions/{id}/charge`` answers with the
subscription, not the charge. A charge whose answer was lost is found again only through
what it carried itself: give every line a non-catalog price (``NonCatalogItem``) whose
``custom_data`` names it, then look for that ``custom_data``:

- ``effective_from="immediately"``: ``transactions(sub, origin=["subscription_charge"])``;
  each transaction's ``items[].price`` is the price as charged, ``custom_data`` included.
- ``effective_from="next_billing_period"``: nothing is billed until the renewal.
  ``subscription(sub, next_transaction=True).next_transaction.lines`` lists the pending
  lines by ``price_id`` (without the price); ``price(price_id)`` has its ``custom_data``.
  After the renewal the line is on the ``subscription_recurring`` transaction.

A catalog price (``CatalogItem``) carries nothing of the charge, so a lost charge of one
cannot be told apart from another charge of the same price.

``before_request`` is called with the endpoint (``"POST /subscriptions/{id}/charge"``)
before every request, pages included: the seam for a rate limiter shared by all workers
(it may raise ``WaitForTurn``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
import structlog

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from workers.destinations.http import retry_after, try_again_later

log = structlog.get_logger(__name__)

PADDLE_VERSION = "1"
PER_PAGE = 30  # Paddle's most transactions per page
#: Paddle's own default quantity range for a non-catalog price; a larger quantity needs
#: the price to say so.
DEFAULT_MAX_QUANTITY = 100
#: Paddle locks a subscription for changes in the 30 minutes before it renews; it says
#: nothing of when the lock ends, so a locked call is tried again after this.
LOCKED_RETRY_SECONDS = 300.0
LOCKED = ("subscription_locked_renewal", "subscription_locked_processing")
#: The per-subscription limits on immediate charges: how long each lasts when the 429
#: carries no ``Retry-After``.
CHARGE_LIMITS = {
    "subscription_immediate_charge_hour_limit_exceeded": 3600.0,
    "subscription_immediate_charge_24_hour_limit_exceeded": 86400.0,
}

EffectiveFrom = Literal["next_billing_period", "immediately"]

SUBSCRIPTION = "GET /subscriptions/{id}"
CHARGE = "POST /subscriptions/{id}/charge"
TRANSACTIONS = "GET /transactions"
TRANSACTION = "GET /transactions/{id}"
PRICE = "GET /prices/{id}"


class TooManyRequests(TransientError):
    """429: over Paddle's limit for the client address (``too_many_requests``) or for the
    subscription's immediate charges (``subscription_immediate_charge_*``)."""

    def __init__(self, message: str, *, retry_after: float | None, code: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code

    @property
    def per_subscription(self) -> bool:
        """The subscription's limit on immediate charges, not the client's on requests."""
        return self.code in CHARGE_LIMITS


# --- what goes out --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A price from the Paddle catalog, by id."""

    price_id: str
    quantity: int

    def __post_init__(self) -> None:
        _check_quantity(self.quantity)

    def to_json(self) -> dict[str, Any]:
        return {"price_id": self.price_id, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class NonCatalogItem:
    """A price made for this charge: ``amount`` per unit in minor units of
    ``currency_code``, for the catalog product ``product_id``. ``custom_data`` stays on the
    price, which is how the charge is found again; ``description`` is internal,
    ``name`` is what the customer sees."""

    description: str
    amount: int
    currency_code: str
    product_id: str
    quantity: int
    name: str | None = None
    tax_mode: str | None = None
    custom_data: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_quantity(self.quantity)
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 0:
            raise ValueError(f"amount must be whole minor units, not {self.amount!r}")
        if not 2 <= len(self.description) <= 500:
            raise ValueError("a Paddle price description has 2 to 500 characters")

    def to_json(self) -> dict[str, Any]:
        price: dict[str, Any] = {
            "description": self.description,
            "unit_price": {"amount": str(self.amount), "currency_code": self.currency_code},
            "product_id": self.product_id,
            "quantity": {
                "minimum": 1,
                "maximum": max(self.quantity, DEFAULT_MAX_QUANTITY),
            },
        }
        if self.name is not None:
            price["name"] = self.name
        if self.tax_mode is not None:
            price["tax_mode"] = self.tax_mode
        if self.custom_data is not None:
            price["custom_data"] = dict(self.custom_data)
        return {"price": price, "quantity": self.quantity}


ChargeItem = CatalogItem | NonCatalogItem


def _check_quantity(quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"a Paddle quantity is a whole number of at least 1, not {quantity!r}")


# --- what comes back ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Price:
    id: str
    type: str  # "standard" (catalog) or "custom" (made for a charge)
    product_id: str
    description: str
    name: str | None
    amount: int
    currency_code: str
    custom_data: dict[str, Any] | None
    recurring: bool
    tax_mode: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Price:
        unit = data.get("unit_price") or {}
        return cls(
            id=data["id"],
            type=data.get("type") or "standard",
            product_id=data.get("product_id", ""),
            description=data.get("description", ""),
            name=data.get("name"),
            amount=int(unit.get("amount", "0")),
            currency_code=unit.get("currency_code", ""),
            custom_data=data.get("custom_data"),
            recurring=data.get("billing_cycle") is not None,
            tax_mode=data.get("tax_mode"),
        )


@dataclass(frozen=True, slots=True)
class TransactionItem:
    price: Price
    quantity: int


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    status: str
    origin: str
    subscription_id: str | None
    currency_code: str
    created_at: datetime
    billed_at: datetime | None
    items: tuple[TransactionItem, ...]
    total: int  # grand total, minor units

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        totals = (data.get("details") or {}).get("totals") or {}
        return cls(
            id=data["id"],
            status=data["status"],
            origin=data.get("origin", ""),
            subscription_id=data.get("subscription_id"),
            currency_code=data.get("currency_code", ""),
            created_at=datetime.fromisoformat(data["created_at"]),
            billed_at=_when(data.get("billed_at")),
            items=tuple(
                TransactionItem(Price.from_json(item["price"]), item["quantity"])
                for item in data.get("items") or []
            ),
            total=int(totals.get("grand_total") or totals.get("total") or 0),
        )


@dataclass(frozen=True, slots=True)
class PendingLine:
    """A line of the subscription's next transaction: its price by id only."""

    price_id: str | None
    quantity: int
    subtotal: int
    product_id: str | None


@dataclass(frozen=True, slots=True)
class NextTransaction:
    starts_at: datetime
    lines: tuple[PendingLine, ...]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    status: str  # active, trialing, past_due, paused, canceled
    customer_id: str
    currency_code: str
    collection_mode: str
    next_billed_at: datetime | None
    recurring_price_ids: tuple[str, ...]
    next_transaction: NextTransaction | None  # only when asked for

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subscription:
        upcoming = data.get("next_transaction")
        next_transaction = None
        if upcoming:
            lines = (upcoming.get("details") or {}).get("line_items") or []
            next_transaction = NextTransaction(
                starts_at=datetime.fromisoformat(upcoming["billing_period"]["starts_at"]),
                lines=tuple(
                    PendingLine(
                        price_id=line.get("price_id"),
                        quantity=line["quantity"],
                        subtotal=int(line["totals"]["subtotal"]),
                        product_id=(line.get("product") or {}).get("id"),
                    )
                    for line in lines
                ),
            )
        return cls(
            id=data["id"],
            status=data["status"],
            customer_id=data.get("customer_id", ""),
            currency_code=data.get("currency_code", ""),
            collection_mode=data.get("collection_mode", ""),
            next_billed_at=_when(data.get("next_billed_at")),
            recurring_price_ids=tuple(item["price"]["id"] for item in data.get("items") or []),
            next_transaction=next_transaction,
        )


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- the client -----------------------------------------------------------------------


class PaddleClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        before_request: Callable[[str], None] | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "Paddle-Version": PADDLE_VERSION,
                "User-Agent": "meterbridge",
            },
            transport=transport,
        )
        self._before_request = before_request

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PaddleClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def subscription(self, subscription_id: str, *, next_transaction: bool = False) -> Subscription:
        """The subscription; with ``next_transaction``, the preview of its next bill, which
        holds the ``next_billing_period`` charges not billed yet."""
        params = {"include": "next_transaction"} if next_transaction else None
        data = self._request(
            SUBSCRIPTION, "GET", f"/subscriptions/{subscription_id}", params=params
        )
        return Subscription.from_json(data["data"])

    def charge(
        self,
        subscription_id: str,
        items: Sequence[ChargeItem],
        effective_from: EffectiveFrom = "next_billing_period",
        *,
        on_payment_failure: Literal["prevent_change", "apply_change"] | None = None,
    ) -> Subscription:
        """One-time charges on the subscription. Not idempotent: after a lost answer, look
        for the charge (see the module's doc) before sending it again."""
        body: dict[str, Any] = {
            "effective_from": effective_from,
            "items": [item.to_json() for item in items],
        }
        if on_payment_failure is not None:
            body["on_payment_failure"] = on_payment_failure
        data = self._request(CHARGE, "POST", f"/subscriptions/{subscription_id}/charge", json=body)
        return Subscription.from_json(data["data"])

    def transactions(
        self,
        subscription_id: str,
        *,
        origin: Sequence[str] = (),
        status: Sequence[str] = (),
        created_from: datetime | None = None,
    ) -> list[Transaction]:
        """Every transaction of the subscription that matches, oldest first, all pages."""
        params: dict[str, str] = {
            "subscription_id": subscription_id,
            "order_by": "id[ASC]",
            "per_page": str(PER_PAGE),
        }
        if origin:
            params["origin"] = ",".join(origin)
        if status:
            params["status"] = ",".join(status)
        if created_from is not None:
            params["created_at[GTE]"] = created_from.isoformat()
        found: list[Transaction] = []
        while True:
            data = self._request(TRANSACTIONS, "GET", "/transactions", params=params)
            page = [Transaction.from_json(entry) for entry in data.get("data") or []]
            found.extend(page)
            pagination = (data.get("meta") or {}).get("pagination") or {}
            if not page or not pagination.get("has_more"):
                return found
            # Take only ``after`` from ``next``: the host and the filters stay ours.
            following = dict(parse_qsl(urlsplit(pagination.get("next") or "").query))
            after = following.get("after") or page[-1].id
            if after == params.get("after"):
                return found
            params = {**params, "after": after}

    def transaction(self, transaction_id: str) -> Transaction:
        data = self._request(TRANSACTION, "GET", f"/transactions/{transaction_id}")
        return Transaction.from_json(data["data"])

    def price(self, price_id: str) -> Price:
        """A price by id, catalog or made for a charge (``custom_data`` included)."""
        return Price.from_json(self._request(PRICE, "GET", f"/prices/{price_id}")["data"])

    def _request(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self._before_request is not None:
            self._before_request(endpoint)
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Paddle did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach Paddle: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            log.info("paddle.call", endpoint=endpoint, path=path, status=response.status_code)
            raise _error(method, path, response)
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientError(
                f"Paddle answered {method} {path} {response.status_code} without JSON"
            ) from exc
        if not isinstance(body, dict):
            raise TransientError(f"Paddle answered {method} {path} with no object")
        log.info(
            "paddle.call",
            endpoint=endpoint,
            path=path,
            status=response.status_code,
            request_id=(body.get("meta") or {}).get("request_id"),
        )
        return body


def _error(method: str, path: str, response: httpx.Response) -> Exception:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") or "unknown"
    status = response.status_code
    detail = error.get("detail") or response.reason_phrase
    fields = "; ".join(
        f"{problem.get('field')}: {problem.get('message')}" for problem in error.get("errors") or []
    )
    request_id = ((body.get("meta") if isinstance(body, dict) else None) or {}).get("request_id")
    message = f"Paddle {status} {code} on {method} {path}: {detail}"
    if fields:
        message += f" ({fields})"
    if request_id:
        message += f" [request {request_id}]"
    wait = retry_after(response)
    if status == 429:
        return TooManyRequests(message, retry_after=wait or CHARGE_LIMITS.get(code), code=code)
    if try_again_later(status):
        return TransientError(message, retry_after=wait)
    if status == 409 and code in LOCKED:
        return TransientError(message, retry_after=wait or LOCKED_RETRY_SECONDS)
    if status in (401, 403):
        return AuthenticationFailed(message)
    return PerformFailed(message)
