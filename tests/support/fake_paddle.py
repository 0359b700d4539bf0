"""A fake Paddle Billing API: a real HTTP server the tests start, implementing the part of
API v1 meterbridge uses, with Paddle's JSON envelope, error format, bearer API keys, its
rate limits, and fault injection.

    fake = FakePaddle().start()
    sub = fake.subscription(currency="EUR")        # an active subscription (monthly plan)
    fake.fail_next(2, "500")                       # the next two API calls answer 500
    fake.fail_next(1, "429", retry_after=2)        # ... 429 with Retry-After: 2
    fake.fail_next(1, "hang")                      # ... hang past the client's timeout
    fake.fail_next(1, "apply_then_hang")           # ... do the work, then hang (answer lost)
    fake.charges(sub)                              # the one-time charges it holds
    fake.applied("charge")                         # writes really applied
    fake.renew(sub)                                # bill the renewal (pending charges go on it)
    fake.calls                                     # every request, with its monotonic time

What it reproduces of the real API, because meterbridge depends on it:

- ``POST /subscriptions/{id}/charge`` takes ``effective_from``, ``items`` and
  ``on_payment_failure`` and nothing else: Paddle checks every field against its
  reference and refuses an unknown one (400 ``invalid_field``), so there is no
  ``custom_data`` on the charge itself. A non-catalog price (``items[].price``) and a
  non-catalog product (``items[].price.product``) do take ``custom_data``; Paddle keeps the
  price as a price entity of ``type: custom``.
- There is no idempotency key. The answer is the subscription, without the charge.
- ``immediately`` bills a transaction at once (``origin: subscription_charge``), found again
  with ``GET /transactions?subscription_id=…&origin=subscription_charge``; its
  ``items[].price`` is the full price entity, ``custom_data`` included.
- ``next_billing_period`` makes no transaction: the charge waits for the renewal, visible
  until then only in ``GET /subscriptions/{id}?include=next_transaction``, whose
  ``details.line_items[]`` name the ``price_id`` but carry no price (so no price
  ``custom_data``); ``GET /prices/{price_id}`` gives the price. :meth:`renew` bills it on the
  renewal transaction (``origin: subscription_recurring``).
- Quantities are whole numbers within the price's ``quantity`` range (a non-catalog price
  without one allows 1 to 100); amounts are strings of digits (minor units).
- 240 requests a minute per client address (``too_many_requests``, ``Retry-After``), and
  20 immediate charges an hour, 100 a day, per subscription (429
  ``subscription_immediate_charge_hour_limit_exceeded`` / ``…_24_hour_…``). Tests lower
  them with ``requests_per_minute``, ``immediate_charges_per_hour``/``_per_day``, and
  shorten the fake's minute and hour with ``minute_seconds`` and ``hour_seconds``.
- API keys: no ``Authorization`` header, a header that is not ``Bearer``, or an unknown key
  answer 403 (``authentication_missing``, ``authentication_malformed``, ``invalid_token``),
  a key in ``forbidden_keys`` 403 ``forbidden``, as Paddle documents for API keys.
- 409 ``subscription_locked_renewal`` for a change within 30 minutes of the renewal.

Where the fake is stricter than anything documented (a charge's currency must be the
subscription's; a catalog price with a billing cycle is refused as ``invalid_field``), it
says so in the error's detail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.processes import free_port, serve_in_thread, stop_server

API_KEY = "pdl_sdbx_apikey_01meterbridgetestkey00000000_fakefakefakefakefake_AAA"
DOCS = "https://developer.paddle.com/errors"
PER_PAGE_MAX = 30  # Paddle's maximum (and default) page size for transactions
LOCK_BEFORE_RENEWAL = timedelta(minutes=30)
EFFECTIVE_FROM = ("next_billing_period", "immediately")
ON_PAYMENT_FAILURE = ("prevent_change", "apply_change")
TAX_MODES = ("account_setting", "external", "internal", "location")
TAX_CATEGORIES = (
    "digital-goods",
    "ebooks",
    "implementation-services",
    "professional-services",
    "saas",
    "software-programming-services",
    "standard",
    "training-services",
    "website-hosting",
)
DIGITS = re.compile(r"\d+")
CURRENCY = re.compile(r"[A-Z]{3}")

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Fault:
    kind: str  # "500" | "429" | "hang" | "apply_then_hang"
    retry_after: int | None = None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    key: str | None
    client: str
    at: float  # time.monotonic() when the request arrived
    status: int = 0


@dataclass(frozen=True)
class Charge:
    """One accepted ``POST /subscriptions/{id}/charge``."""

    subscription_id: str
    effective_from: str
    items: list[dict[str, Any]]  # transaction items: {"price": <price entity>, "quantity"}
    at: float
    transaction_id: str | None  # None while a next_billing_period charge waits for renewal


@dataclass
class FakePaddle:
    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    forbidden_keys: set[str] = field(default_factory=set)  # valid, but without permission
    requests_per_minute: int = 240
    minute_seconds: float = 60.0
    immediate_charges_per_hour: int = 20
    immediate_charges_per_day: int = 100
    hour_seconds: float = 3600.0
    hang_seconds: float = 5.0
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._seq = itertools.count(1)
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._transactions: dict[str, dict[str, Any]] = {}
        self._prices: dict[str, dict[str, Any]] = {}
        self._products: dict[str, dict[str, Any]] = {}
        self._charges: list[Charge] = []
        self._requests: dict[str, deque[float]] = {}  # client address → admitted requests
        self._immediate: dict[str, deque[float]] = {}  # subscription → immediate charges
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self.plan_product = self.product(name="Plan", tax_category="saas")
        self.usage_product = self.product(name="Usage", tax_category="saas")

    # --- the tests' side -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakePaddle:
        app = Starlette(
            routes=[
                Route("/subscriptions/{id}", self._get_subscription, methods=["GET"]),
                Route("/subscriptions/{id}/charge", self._charge, methods=["POST"]),
                Route("/transactions", self._list_transactions, methods=["GET"]),
                Route("/transactions/{id}", self._get_transaction, methods=["GET"]),
                Route("/prices/{id}", self._get_price, methods=["GET"]),
            ]
        )
        self._server = serve_in_thread(app, self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def product(
        self, product_id: str | None = None, *, name: str = "Usage", tax_category: str = "saas"
    ) -> str:
        with self._lock:
            product_id = product_id or self._id("pro")
            self._products[product_id] = _product(product_id, name, tax_category, "standard")
            return product_id

    def price(
        self,
        price_id: str | None = None,
        *,
        amount: int = 100,
        currency: str = "USD",
        product_id: str | None = None,
        description: str = "Catalog price",
        billing_cycle: dict[str, Any] | None = None,
        quantity: tuple[int, int] = (1, 100),
    ) -> str:
        """A catalog price (one-time unless ``billing_cycle`` is given)."""
        with self._lock:
            price_id = price_id or self._id("pri")
            self._prices[price_id] = {
                "id": price_id,
                "product_id": product_id or self.usage_product,
                "type": "standard",
                "description": description,
                "name": description,
                "tax_mode": "account_setting",
                "billing_cycle": billing_cycle,
                "trial_period": None,
                "unit_price": {"amount": str(amount), "currency_code": currency},
                "unit_price_overrides": [],
                "custom_data": None,
                "status": "active",
                "quantity": {"minimum": quantity[0], "maximum": quantity[1]},
                "import_meta": None,
                "created_at": _stamp(_now()),
                "updated_at": _stamp(_now()),
            }
            return price_id

    def subscription(
        self,
        subscription_id: str | None = None,
        *,
        currency: str = "USD",
        customer: str | None = None,
        status: str = "active",
        collection_mode: str = "automatic",
        plan_amount: int = 5000,
        next_billed_at: datetime | None = None,
    ) -> str:
        """A subscription to a monthly plan, billed a month from now unless told."""
        with self._lock:
            subscription_id = subscription_id or self._id("sub")
            now = _now()
            plan = self.price(
                amount=plan_amount,
                currency=currency,
                product_id=self.plan_product,
                description="Monthly plan",
                billing_cycle={"interval": "month", "frequency": 1},
            )
            next_billed = next_billed_at or now + timedelta(days=30)
            self._subscriptions[subscription_id] = {
                "id": subscription_id,
                "status": status,
                "customer_id": customer or self._id("ctm"),
                "address_id": self._id("add"),
                "business_id": None,
                "currency_code": currency,
                "created_at": _stamp(now),
                "updated_at": _stamp(now),
                "started_at": _stamp(now),
                "first_billed_at": _stamp(now),
                "collection_mode": collection_mode,
                "billing_details": _billing_details(collection_mode),
                "billing_cycle": {"interval": "month", "frequency": 1},
                "custom_data": None,
                "_period": (next_billed - timedelta(days=30), next_billed),
                "_recurring": [{"price_id": plan, "quantity": 1}],
                "_pending": [],
            }
            return subscription_id

    def set_status(self, subscription_id: str, status: str) -> None:
        with self._lock:
            self._subscriptions[subscription_id]["status"] = status

    def renew(self, subscription_id: str) -> str:
        """Paddle renews the subscription: a ``subscription_recurring`` transaction for the
        plan and every pending one-time charge; the next period starts."""
        with self._lock:
            sub = self._subscriptions[subscription_id]
            starts, ends = sub["_period"]
            items = [self._item(i["price_id"], i["quantity"]) for i in sub["_recurring"]]
            items += sub["_pending"]
            sub["_period"] = (ends, ends + (ends - starts))
            txn = self._transaction(sub, "subscription_recurring", items, sub["_period"])
            sub["_pending"] = []
            self._charges = [
                replace(charge, transaction_id=txn)
                if charge.subscription_id == subscription_id and charge.transaction_id is None
                else charge
                for charge in self._charges
            ]
            return txn

    def fail_next(self, count: int, kind: str, *, retry_after: int | None = None) -> None:
        with self._lock:
            self._faults.extend(Fault(kind, retry_after) for _ in range(count))

    def charges(self, subscription_id: str) -> list[Charge]:
        with self._lock:
            return [
                replace(charge, items=json.loads(json.dumps(charge.items)))
                for charge in self._charges
                if charge.subscription_id == subscription_id
            ]

    def transactions_of(self, subscription_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                json.loads(json.dumps(t))
                for t in self._transactions.values()
                if t["subscription_id"] == subscription_id
            ]

    def applied(self, operation: str, subscription_id: str | None = None) -> list[Call]:
        """Writes that changed something: 2xx answers to ``POST …/{operation}``."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.method == "POST"
                and call.path.endswith(f"/{operation}")
                and 200 <= call.status < 300
                and (subscription_id is None or f"/{subscription_id}/" in call.path)
            ]

    def peak(self, seconds: float) -> int:
        """The most requests that arrived within any ``seconds`` long window."""
        with self._lock:
            times = sorted(call.at for call in self.calls)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    # --- Paddle's side ---------------------------------------------------------------

    async def _call(self, request: Request, operation: Any) -> JSONResponse:
        raw = await request.body()
        try:
            parsed: Any = json.loads(raw) if raw else None
            valid = True
        except ValueError:
            parsed, valid = raw.decode(errors="replace"), False
        client = request.client.host if request.client else "?"
        header = request.headers.get("authorization")
        key = header[7:] if header and header.startswith("Bearer ") else None
        call = Call(
            request.method,
            request.url.path,
            dict(request.query_params),
            parsed,
            key,
            client,
            time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
            limited = self._over_rate_limit(client, call.at)
        if limited is not None:
            return self._answer(
                call,
                429,
                _error(
                    "too_many_requests",
                    "IP address exceeded the allowed rate limit. Retry after the number of"
                    " seconds in the Retry-After header.",
                    kind="api_error",
                    page="shared",
                ),
                {"Retry-After": str(limited)},
            )
        refused = self._refused(header)
        if refused is not None:
            return self._answer(call, 403, refused)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault and fault.kind == "500":
            return self._answer(
                call,
                500,
                _error("internal_error", "An internal error occurred", "api_error", "shared"),
            )
        if fault and fault.kind == "429":
            return self._answer(
                call,
                429,
                _error(
                    "too_many_requests",
                    "IP address exceeded the allowed rate limit.",
                    kind="api_error",
                    page="shared",
                ),
                {"Retry-After": str(fault.retry_after or 1)},
            )
        if fault and fault.kind == "hang":
            await asyncio.sleep(self.hang_seconds)
            return self._answer(
                call, 504, _error("bad_gateway", "timed out", "api_error", "shared")
            )
        if request.method == "POST" and not valid:
            return self._answer(call, 400, _error("invalid_json", "Invalid JSON in request body"))
        with self._lock:
            status, payload, headers = operation(
                dict(request.path_params), parsed, dict(request.query_params), str(request.url)
            )
        if fault and fault.kind == "apply_then_hang":
            await asyncio.sleep(self.hang_seconds)
        return self._answer(call, status, payload, headers)

    def _over_rate_limit(self, client: str, now: float) -> int | None:
        """Seconds to wait when ``client`` is over its limit; else count the request."""
        window = self._requests.setdefault(client, deque())
        while window and now - window[0] >= self.minute_seconds:
            window.popleft()
        if len(window) >= self.requests_per_minute:
            return max(1, math.ceil(window[0] + self.minute_seconds - now))
        window.append(now)
        return None

    def _refused(self, header: str | None) -> dict[str, Any] | None:
        if not header:
            return _error("authentication_missing", "Authentication header missing.", page="shared")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return _error(
                "authentication_malformed",
                "Authentication header included, but incorrectly formatted.",
                page="shared",
            )
        key = header[7:]
        if key in self.forbidden_keys:
            return _error(
                "forbidden", "You aren't permitted to perform this request.", page="shared"
            )
        if key not in self.api_keys:
            return _error("invalid_token", "Invalid or revoked API key.", page="shared")
        return None

    def _answer(
        self,
        call: Call,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        call.status = status
        body = {**body, "meta": {**body.get("meta", {}), "request_id": str(uuid.uuid4())}}
        return JSONResponse(body, status_code=status, headers=headers)

    # --- operations (run under the lock) ---------------------------------------------

    async def _get_subscription(self, request: Request) -> JSONResponse:
        def operation(path: dict[str, Any], _body: Any, query: dict[str, Any], _url: str) -> Answer:
            sub = self._subscriptions.get(path["id"])
            if sub is None:
                return _not_found(path["id"])
            include = set(filter(None, query.get("include", "").split(",")))
            return 200, {"data": self._render_subscription(sub, include)}, {}

        return await self._call(request, operation)

    async def _charge(self, request: Request) -> JSONResponse:
        def operation(path: dict[str, Any], body: Any, _query: dict[str, Any], _url: str) -> Answer:
            sub = self._subscriptions.get(path["id"])
            if sub is None:
                return _not_found(path["id"])
            problems = _charge_problems(body)
            if problems:
                return _invalid(problems)
            refused = self._charge_refused(sub, body)
            if refused is not None:
                return refused
            items: list[dict[str, Any]] = []
            for index, item in enumerate(body["items"]):
                entry = self._charge_item(sub, index, item)
                if isinstance(entry, tuple):
                    return entry
                items.append(entry)
            ids = [item["price_id"] for item in body["items"] if "price_id" in item]
            if len(ids) != len(set(ids)):
                return _refusal(
                    400,
                    "subscription_charge_duplicate_price_ids",
                    "items must not contain the same price_id more than once",
                    page="subscriptions",
                )
            limited = self._immediate_limited(sub, body["effective_from"])
            if limited is not None:
                return limited
            for item in items:  # non-catalog prices exist once the charge is accepted
                self._prices.setdefault(item["price"]["id"], item["price"])
            now = time.monotonic()
            transaction = None
            if body["effective_from"] == "immediately":
                self._immediate.setdefault(sub["id"], deque()).append(now)
                transaction = self._transaction(sub, "subscription_charge", items, sub["_period"])
            else:
                sub["_pending"].extend(items)
            self._charges.append(Charge(sub["id"], body["effective_from"], items, now, transaction))
            sub["updated_at"] = _stamp(_now())
            return 200, {"data": self._render_subscription(sub, set())}, {}

        return await self._call(request, operation)

    async def _list_transactions(self, request: Request) -> JSONResponse:
        def operation(_path: dict[str, Any], _body: Any, query: dict[str, Any], url: str) -> Answer:
            try:
                found = self._filtered(query)
                per_page = max(1, min(int(query.get("per_page", PER_PAGE_MAX)), PER_PAGE_MAX))
            except ValueError as exc:
                return _invalid([{"field": "query", "message": str(exc)}])
            after = query.get("after")
            if after:
                ids = [t["id"] for t in found]
                found = found[ids.index(after) + 1 :] if after in ids else []
            page = found[:per_page]
            next_query = {**query, "after": page[-1]["id"] if page else after or ""}
            pagination = {
                "per_page": per_page,
                "next": f"{url.split('?', 1)[0]}?{urlencode(next_query)}",
                "has_more": len(found) > per_page,
                "estimated_total": len(found),
            }
            body = {"data": [_copy(t) for t in page], "meta": {"pagination": pagination}}
            return 200, body, {}

        return await self._call(request, operation)

    async def _get_transaction(self, request: Request) -> JSONResponse:
        def operation(
            path: dict[str, Any], _body: Any, _query: dict[str, Any], _url: str
        ) -> Answer:
            txn = self._transactions.get(path["id"])
            if txn is None:
                return _not_found(path["id"])
            return 200, {"data": _copy(txn)}, {}

        return await self._call(request, operation)

    async def _get_price(self, request: Request) -> JSONResponse:
        def operation(path: dict[str, Any], _body: Any, query: dict[str, Any], _url: str) -> Answer:
            price = self._prices.get(path["id"])
            if price is None:
                return _not_found(path["id"])
            data = _copy(price)
            if "product" in query.get("include", "").split(","):
                data["product"] = _copy(self._products[price["product_id"]])
            return 200, {"data": data}, {}

        return await self._call(request, operation)

    # --- the charge's rules ----------------------------------------------------------

    def _charge_refused(self, sub: dict[str, Any], body: dict[str, Any]) -> Answer | None:
        status = sub["status"]
        if status == "canceled":
            return _refusal(
                400,
                "subscription_update_when_canceled",
                "cannot update subscription, as subscription is canceled",
                page="subscriptions",
            )
        if status == "past_due":
            return _refusal(
                400,
                "subscription_update_when_past_due",
                "cannot update subscription, as subscription is past due",
                page="subscriptions",
            )
        if status != "active":
            return _refusal(
                400,
                "subscription_not_active",
                "action requires the subscription to be active",
                page="subscriptions",
            )
        if _now() >= sub["_period"][1] - LOCK_BEFORE_RENEWAL:
            return _refusal(
                409,
                "subscription_locked_renewal",
                "unable to update subscription 30m0s before renewal",
                page="subscriptions",
            )
        return None

    def _charge_item(
        self, sub: dict[str, Any], index: int, item: dict[str, Any]
    ) -> dict[str, Any] | Answer:
        where = f"items[{index}]"
        if "price_id" in item:
            price = self._prices.get(item["price_id"])
            if price is None:
                return _not_found(item["price_id"])
            if price["billing_cycle"] is not None:
                return _invalid(
                    [
                        {
                            "field": f"{where}.price_id",
                            "message": "only prices where billing_cycle is null may be"
                            " charged once (fake: the real code is unconfirmed)",
                        }
                    ]
                )
        else:
            spec = item["price"]
            product_id = spec.get("product_id")
            if product_id is not None and product_id not in self._products:
                return _not_found(product_id)
            if product_id is None:
                product = spec["product"]
                product_id = self._id("pro")
                self._products[product_id] = {
                    **_product(product_id, product["name"], product["tax_category"], "custom"),
                    "description": product.get("description"),
                    "image_url": product.get("image_url"),
                    "custom_data": product.get("custom_data"),
                }
            limits = spec.get("quantity") or {"minimum": 1, "maximum": 100}
            price = {
                "id": self._id("pri"),
                "product_id": product_id,
                "type": "custom",
                "description": spec["description"],
                "name": spec.get("name"),
                "tax_mode": spec.get("tax_mode", "account_setting"),
                "billing_cycle": None,
                "trial_period": None,
                "unit_price": dict(spec["unit_price"]),
                "unit_price_overrides": [],
                "custom_data": spec.get("custom_data"),
                "status": "active",
                "quantity": {"minimum": limits["minimum"], "maximum": limits["maximum"]},
                "import_meta": None,
                "created_at": _stamp(_now()),
                "updated_at": _stamp(_now()),
            }
            currency = price["unit_price"]["currency_code"]
            if currency != sub["currency_code"]:
                return _invalid(
                    [
                        {
                            "field": f"{where}.price.unit_price.currency_code",
                            "message": f"must be the subscription's currency"
                            f" {sub['currency_code']} (fake: stricter than documented)",
                        }
                    ]
                )
        low, high = price["quantity"]["minimum"], price["quantity"]["maximum"]
        if not low <= item["quantity"] <= high:
            return _refusal(
                400,
                "subscription_quantity_not_valid",
                f"quantity for {price['id']} must be between {low} and {high}",
                page="subscriptions",
            )
        return {"price": price, "quantity": item["quantity"]}

    def _immediate_limited(self, sub: dict[str, Any], effective_from: str) -> Answer | None:
        if effective_from != "immediately":
            return None
        charges = self._immediate.setdefault(sub["id"], deque())
        now = time.monotonic()
        day = 24 * self.hour_seconds
        while charges and now - charges[0] >= day:
            charges.popleft()
        in_hour = [at for at in charges if now - at < self.hour_seconds]
        if len(in_hour) >= self.immediate_charges_per_hour:
            wait = in_hour[0] + self.hour_seconds - now
            code, limit, span = (
                "subscription_immediate_charge_hour_limit_exceeded",
                self.immediate_charges_per_hour,
                "an hour",
            )
        elif len(charges) >= self.immediate_charges_per_day:
            wait = charges[0] + day - now
            code, limit, span = (
                "subscription_immediate_charge_24_hour_limit_exceeded",
                self.immediate_charges_per_day,
                "24 hours",
            )
        else:
            return None
        detail = (
            "You've exceeded the limit for the number of immediate charges that can be made"
            f" to this subscription in {span}. Limit: {limit} per"
            f" {'hour' if span == 'an hour' else '24 hours'}"
        )
        body = _error(code, detail, page="subscriptions")
        return 429, body, {"Retry-After": str(max(1, math.ceil(wait)))}

    # --- entities --------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        """``pri_…``: 26 lower-case letters and digits that sort in creation order."""
        tail = f"01{next(self._seq):010d}{secrets.token_hex(7)}"
        return f"{prefix}_{tail}"

    def _item(self, price_id: str, quantity: int) -> dict[str, Any]:
        return {"price": self._prices[price_id], "quantity": quantity}

    def _transaction(
        self,
        sub: dict[str, Any],
        origin: str,
        items: list[dict[str, Any]],
        period: tuple[datetime, datetime],
    ) -> str:
        now = _stamp(_now())
        txn_id = self._id("txn")
        manual = sub["collection_mode"] == "manual"
        self._transactions[txn_id] = {
            "id": txn_id,
            "status": "billed" if manual else "completed",
            "customer_id": sub["customer_id"],
            "address_id": sub["address_id"],
            "business_id": None,
            "custom_data": None,
            "origin": origin,
            "collection_mode": sub["collection_mode"],
            "subscription_id": sub["id"],
            "invoice_id": self._id("inv"),
            "invoice_number": f"{next(self._seq):05d}",
            "billing_details": sub["billing_details"],
            "billing_period": {"starts_at": _stamp(period[0]), "ends_at": _stamp(period[1])},
            "currency_code": sub["currency_code"],
            "discount_id": None,
            "created_at": now,
            "updated_at": now,
            "billed_at": now,
            "revised_at": None,
            "items": [
                {"price": _copy(i["price"]), "quantity": i["quantity"], "proration": None}
                for i in items
            ],
            "details": self._details(sub, items, with_ids=True),
            "payments": [],
            "checkout": {"url": None},
        }
        return txn_id

    def _details(
        self, sub: dict[str, Any], items: list[dict[str, Any]], *, with_ids: bool
    ) -> dict[str, Any]:
        lines = []
        for item in items:
            price, quantity = item["price"], item["quantity"]
            unit = int(price["unit_price"]["amount"])
            line: dict[str, Any] = {
                "price_id": price["id"],
                "quantity": quantity,
                "proration": None,
                "tax_rate": "0",
                "unit_totals": _totals(unit),
                "totals": _totals(unit * quantity),
                "product": _copy(self._products[price["product_id"]]),
            }
            if with_ids:
                line["id"] = self._id("txnitm")
            else:
                line["item_id"] = None
            lines.append(line)
        subtotal = str(sum(int(line["totals"]["subtotal"]) for line in lines))
        return {
            "tax_rates_used": [{"tax_rate": "0", "totals": _totals(int(subtotal))}],
            "totals": {
                "subtotal": subtotal,
                "discount": "0",
                "tax": "0",
                "total": subtotal,
                "credit": "0",
                "credit_to_balance": "0",
                "balance": subtotal,
                "grand_total": subtotal,
                "grand_total_tax": "0",
                "fee": None,
                "earnings": None,
                "currency_code": sub["currency_code"],
                "exchange_rate": "1",
            },
            "line_items": lines,
        }

    def _render_subscription(self, sub: dict[str, Any], include: set[str]) -> dict[str, Any]:
        data = {k: v for k, v in sub.items() if not k.startswith("_")}
        status, (starts, ends) = sub["status"], sub["_period"]
        running = status in ("active", "past_due", "trialing")
        recurring = [self._item(i["price_id"], i["quantity"]) for i in sub["_recurring"]]
        data.update(
            next_billed_at=_stamp(ends) if running else None,
            paused_at=sub["updated_at"] if status == "paused" else None,
            canceled_at=sub["updated_at"] if status == "canceled" else None,
            discount=None,
            current_billing_period=(
                {"starts_at": _stamp(starts), "ends_at": _stamp(ends)} if running else None
            ),
            scheduled_change=None,
            management_urls={
                "update_payment_method": None,
                "cancel": f"https://sandbox-customer-portal.paddle.com/{sub['id']}/cancel",
            },
            items=[
                {
                    "status": "active",
                    "quantity": item["quantity"],
                    "recurring": True,
                    "created_at": sub["created_at"],
                    "updated_at": sub["created_at"],
                    "previously_billed_at": _stamp(starts),
                    "next_billed_at": _stamp(ends) if running else None,
                    "trial_dates": None,
                    "price": _copy(item["price"]),
                    "product": _copy(self._products[item["price"]["product_id"]]),
                }
                for item in recurring
            ],
            import_meta=None,
        )
        if "next_transaction" in include:
            data["next_transaction"] = (
                {
                    "billing_period": {
                        "starts_at": _stamp(ends),
                        "ends_at": _stamp(ends + (ends - starts)),
                    },
                    "details": self._details(sub, recurring + sub["_pending"], with_ids=False),
                    "adjustments": [],
                }
                if running
                else None
            )
        if "recurring_transaction_details" in include:
            data["recurring_transaction_details"] = self._details(sub, recurring, with_ids=False)
        return data

    def _filtered(self, query: dict[str, str]) -> list[dict[str, Any]]:
        def listed(name: str) -> set[str] | None:
            value = query.get(name)
            return set(value.split(",")) if value else None

        names = ("subscription_id", "customer_id", "origin", "status", "id")
        filters = {name: listed(name) for name in names}
        found = [
            t
            for t in self._transactions.values()
            if all(wanted is None or t[name] in wanted for name, wanted in filters.items())
            and _dates_match(t, query)
        ]
        order = query.get("order_by", "id[ASC]")
        matched = re.fullmatch(r"(id|created_at|updated_at|billed_at)\[(ASC|DESC)\]", order)
        if matched is None:
            raise ValueError(f"order_by: {order!r} is not a valid ordering")
        name, direction = matched.groups()
        found.sort(key=lambda t: (t[name] or "", t["id"]), reverse=direction == "DESC")
        return found


def _charge_problems(body: Any) -> list[dict[str, str]]:
    """What Paddle's request validation would refuse in a charge body."""
    problems: list[dict[str, str]] = []

    def problem(where: str, message: str) -> None:
        problems.append({"field": where, "message": message})

    def only(where: str, value: dict[str, Any], allowed: set[str]) -> None:
        for name in sorted(set(value) - allowed):
            problem(f"{where}{name}", f"Additional property {name} is not allowed")

    if not isinstance(body, dict):
        problem("", "request body must be an object")
        return problems
    only("", body, {"effective_from", "items", "on_payment_failure"})
    if body.get("effective_from") not in EFFECTIVE_FROM:
        problem("effective_from", f"must be one of {', '.join(EFFECTIVE_FROM)}")
    if "on_payment_failure" in body and body["on_payment_failure"] not in ON_PAYMENT_FAILURE:
        problem("on_payment_failure", f"must be one of {', '.join(ON_PAYMENT_FAILURE)}")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        problem("items", "must be a list of 1 to 100 items")
        return problems
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            problem(where, "must be an object")
            continue
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            problem(f"{where}.quantity", "must be a whole number of at least 1")
        if "price_id" in item:
            only(f"{where}.", item, {"price_id", "quantity"})
            if not isinstance(item["price_id"], str) or not item["price_id"].startswith("pri_"):
                problem(f"{where}.price_id", "must be a Paddle price id (pri_…)")
        elif isinstance(item.get("price"), dict):
            only(f"{where}.", item, {"price", "quantity"})
            _price_problems(f"{where}.price", item["price"], problem, only)
        else:
            problem(where, "must have either price_id or price")
    return problems


def _price_problems(where: str, price: dict[str, Any], problem: Any, only: Any) -> None:
    only(
        f"{where}.",
        price,
        {
            "description",
            "name",
            "product_id",
            "product",
            "tax_mode",
            "unit_price",
            "unit_price_overrides",
            "quantity",
            "custom_data",
            "billing_cycle",
            "trial_period",
        },
    )
    description = price.get("description")
    if not isinstance(description, str) or not 2 <= len(description) <= 500:
        problem(f"{where}.description", "must be a string of 2 to 500 characters")
    if "name" in price and price["name"] is not None and not isinstance(price["name"], str):
        problem(f"{where}.name", "must be a string")
    if price.get("billing_cycle") is not None or price.get("trial_period") is not None:
        problem(f"{where}.billing_cycle", "one-time charges take prices with no billing cycle")
    if "tax_mode" in price and price["tax_mode"] not in TAX_MODES:
        problem(f"{where}.tax_mode", f"must be one of {', '.join(TAX_MODES)}")
    if "custom_data" in price and not isinstance(price["custom_data"], dict | None):
        problem(f"{where}.custom_data", "must be an object")
    unit = price.get("unit_price")
    if not isinstance(unit, dict):
        problem(f"{where}.unit_price", "must be provided as part of the request")
    else:
        only(f"{where}.unit_price.", unit, {"amount", "currency_code"})
        amount = unit.get("amount")
        if not isinstance(amount, str) or not DIGITS.fullmatch(amount):
            problem(f"{where}.unit_price.amount", "must be a string holding a whole number")
        if not isinstance(unit.get("currency_code"), str) or not CURRENCY.fullmatch(
            unit["currency_code"]
        ):
            problem(f"{where}.unit_price.currency_code", "must be a supported currency code")
    limits = price.get("quantity")
    if limits is not None and not (
        isinstance(limits, dict)
        and _whole(limits.get("minimum"))
        and _whole(limits.get("maximum"))
        and 1 <= limits["minimum"] <= limits["maximum"] <= 999_999_999
    ):
        problem(f"{where}.quantity", "minimum and maximum: whole numbers, 1 ≤ min ≤ max")
    has_id, has_product = "product_id" in price, "product" in price
    if has_id == has_product:
        problem(f"{where}", "must have either product_id or product")
    elif has_product:
        product = price["product"]
        if not isinstance(product, dict):
            problem(f"{where}.product", "must be an object")
            return
        only(
            f"{where}.product.",
            product,
            {"name", "tax_category", "description", "image_url", "custom_data"},
        )
        if not isinstance(product.get("name"), str) or not product["name"]:
            problem(f"{where}.product.name", "must be provided as part of the request")
        if product.get("tax_category") not in TAX_CATEGORIES:
            problem(f"{where}.product.tax_category", "must be a supported tax category")


def _dates_match(txn: dict[str, Any], query: dict[str, str]) -> bool:
    for key, value in query.items():
        matched = re.fullmatch(r"(created_at|updated_at|billed_at)(?:\[(LT|LTE|GT|GTE)\])?", key)
        if matched is None:
            continue
        name, op = matched.groups()
        if txn[name] is None:
            return False
        have, want = _parse(txn[name]), _parse(value)
        ok = {
            None: have == want,
            "LT": have < want,
            "LTE": have <= want,
            "GT": have > want,
            "GTE": have >= want,
        }[op]
        if not ok:
            return False
    return True


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _product(product_id: str, name: str, tax_category: str, kind: str) -> dict[str, Any]:
    now = _stamp(_now())
    return {
        "id": product_id,
        "name": name,
        "type": kind,
        "tax_category": tax_category,
        "description": None,
        "image_url": None,
        "custom_data": None,
        "status": "active",
        "import_meta": None,
        "created_at": now,
        "updated_at": now,
    }


def _billing_details(collection_mode: str) -> dict[str, Any] | None:
    if collection_mode != "manual":
        return None
    return {
        "enable_checkout": False,
        "purchase_order_number": "",
        "additional_information": None,
        "payment_terms": {"interval": "day", "frequency": 14},
    }


def _totals(amount: int) -> dict[str, str]:
    return {"subtotal": str(amount), "discount": "0", "tax": "0", "total": str(amount)}


def _error(
    code: str, detail: str, kind: str = "request_error", page: str = "shared"
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "type": kind,
        "code": code,
        "detail": detail,
        "documentation_url": f"{DOCS}/{page}/{code}",
    }
    return {"error": error}


def _refusal(status: int, code: str, detail: str, page: str = "shared") -> Answer:
    return status, _error(code, detail, page=page), {}


def _invalid(problems: list[dict[str, str]]) -> Answer:
    body = _error("invalid_field", "Request does not pass validation.")
    body["error"]["errors"] = problems
    return 400, body, {}


def _not_found(entity_id: str) -> Answer:
    return 404, _error("not_found", f"Entity {entity_id} not found"), {}


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _copy(entity: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(entity))
    return copied
