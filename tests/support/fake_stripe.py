"""A fake Stripe: a real HTTP server the tests start, implementing the part of the v1 API
meterbridge uses (invoices, invoice items), with Stripe's JSON shapes and error format,
form-encoded bodies with bracket nesting, bearer (or basic) auth with a secret key,
``Idempotency-Key`` replays, and fault injection.

    fake = FakeStripe().start()                       # fake.url is the API base
    fake.price("price_usage", unit_amount=25)         # a catalogue price for pricing[price]
    fake.fail_next(2, "500")                          # the next two calls answer 500
    fake.fail_next(1, "429", retry_after=2)           # ... 429 with Retry-After: 2
    fake.fail_next(1, "hang")                         # ... hang past the client's timeout
    fake.fail_next(1, "apply_then_hang")              # ... do the work, then hang (answer lost)
    fake.fail_next(1, "500", endpoint="POST /v1/invoiceitems")   # only that endpoint's next call
    fake.finalize(invoice_id); fake.pay(invoice_id)   # the invoice is no longer a draft
    fake.raise_next_invoice("cus_1", "sub_1")         # Stripe invoices the pending items
    fake.items(invoice_id=...); fake.items(customer=..., pending=True)
    fake.applied("create_invoice_item")               # writes really applied (replays excluded)
    fake.peak_rate("POST /v1/invoiceitems")           # most calls seen in any 1 s window

What it models, and where it is stricter or simpler than Stripe:

- It speaks API version ``2026-10-28.endive`` (the installed SDK's) whatever ``Stripe-Version``
  says; the header is checked for form and recorded per call (``Call.stripe_version``).
  Invoice items are priced by exactly one of ``pricing[price]`` + quantity,
  ``unit_amount_decimal`` + quantity, or ``amount``; ``quantity_decimal`` (since
  ``2026-03-25.dahlia``) may replace ``quantity``. The pre-basil ``price`` and ``unit_amount``
  are unknown parameters, as on Stripe. ``price_data`` is refused: the fake does not do it.
- Idempotency: a POST's answer is kept under its key when it was a 2xx (or a ``500_saved``
  fault); the same key with the same parameters replays it with ``Idempotent-Replayed:
  true``, with other parameters it is a 400 ``idempotency_error``. GET and DELETE ignore the
  key, as on Stripe (a second DELETE of an item answers 404).
- Items per invoice are capped at 250. Totals have no tax or discount; finalizing an invoice
  whose amount due is zero or less makes it ``paid``, as Stripe does.
- Error *messages* for editing a finalized invoice, the item cap and the pricing rules are the
  fake's own wording; the types, codes and statuses follow Stripe's documented error shape.
- Customers exist unless ``customers`` is given (then others are ``No such customer``).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import itertools
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.processes import free_port, serve_in_thread, stop_server

API_KEY = "sk_test_meterbridge_fake"
#: A restricted key the fake knows but that may call nothing: every call answers 403.
RESTRICTED_KEY = "rk_test_meterbridge_fake"
#: The version the fake speaks, and the account's default when a call names none.
API_VERSION = "2026-10-28.endive"
MAX_ITEMS_PER_INVOICE = 250
FAULT_KINDS = ("500", "500_saved", "429", "409", "hang", "apply_then_hang")

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_PARAM = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")

# What each endpoint accepts: a name maps to S (a string), MAP (string → string), LIST, or
# a nested schema. Anything else is "Received unknown parameter", as on Stripe.
S, MAP, LIST = "string", "map", "list"
_LIST_PAGING = {"limit": S, "starting_after": S, "ending_before": S, "expand": LIST}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "create_invoice": {
        "customer": S,
        "currency": S,
        "auto_advance": S,
        "collection_method": S,
        "days_until_due": S,
        "description": S,
        "metadata": MAP,
        "pending_invoice_items_behavior": S,
        "subscription": S,
        "expand": LIST,
    },
    "list_invoices": {"customer": S, "status": S, "subscription": S, **_LIST_PAGING},
    "retrieve_invoice": {"expand": LIST},
    "finalize_invoice": {"auto_advance": S, "expand": LIST},
    "list_invoice_lines": dict(_LIST_PAGING),
    "create_invoice_item": {
        "customer": S,
        "invoice": S,
        "subscription": S,
        "currency": S,
        "description": S,
        "discountable": S,
        "metadata": MAP,
        "period": {"start": S, "end": S},
        "pricing": {"price": S},
        "price_data": MAP,
        "quantity": S,
        "quantity_decimal": S,
        "unit_amount_decimal": S,
        "amount": S,
        "expand": LIST,
    },
    "list_invoice_items": {"customer": S, "invoice": S, "pending": S, **_LIST_PAGING},
    "retrieve_invoice_item": {"expand": LIST},
    "delete_invoice_item": {},
}

#: (method, path pattern, operation) for every endpoint the fake serves.
ENDPOINTS = (
    ("POST", "/v1/invoices", "create_invoice"),
    ("GET", "/v1/invoices", "list_invoices"),
    ("GET", "/v1/invoices/{id}", "retrieve_invoice"),
    ("POST", "/v1/invoices/{id}/finalize", "finalize_invoice"),
    ("GET", "/v1/invoices/{id}/lines", "list_invoice_lines"),
    ("POST", "/v1/invoiceitems", "create_invoice_item"),
    ("GET", "/v1/invoiceitems", "list_invoice_items"),
    ("GET", "/v1/invoiceitems/{id}", "retrieve_invoice_item"),
    ("DELETE", "/v1/invoiceitems/{id}", "delete_invoice_item"),
)


@dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    retry_after: float | None = None
    endpoint: str | None = None  # "POST /v1/invoiceitems"; None: the next call, whatever it is


@dataclass
class Call:
    method: str
    path: str
    endpoint: str  # method and path pattern: "DELETE /v1/invoiceitems/{id}"
    operation: str  # "delete_invoice_item"
    path_params: dict[str, str]
    params: dict[str, Any]  # the body (POST) or query, decoded: {"period": {"start": "1"}}
    key: str | None  # the Idempotency-Key sent (only a POST's is used)
    stripe_version: str | None
    at: float  # time.monotonic() when the fake received it
    status: int = 0
    replayed: bool = False


@dataclass
class _Saved:
    endpoint: str
    path: str
    fingerprint: tuple[tuple[str, str], ...]
    status: int
    body: dict[str, Any]


class _Refused(Exception):
    """A Stripe error answer, raised from inside an operation."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = _error(type_, message, code=code, param=param)


@dataclass
class FakeStripe:
    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    restricted_keys: set[str] = field(default_factory=lambda: {RESTRICTED_KEY})
    customers: set[str] | None = None  # None: every customer id exists
    hang_seconds: float = 5.0
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)  # without their lines
    invoice_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._saved: dict[str, _Saved] = {}
        self._ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self.port = free_port()
        self._server: uvicorn.Server | None = None

    # --- the tests' side -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeStripe:
        routes = [
            Route(pattern, self._endpoint(method, pattern, operation), methods=[method])
            for method, pattern, operation in ENDPOINTS
        ]
        app = Starlette(
            routes=routes, exception_handlers={404: self._unrecognised, 405: self._unrecognised}
        )
        self._server = serve_in_thread(app, self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def price(
        self,
        *price_ids: str,
        unit_amount: int | None = 100,
        unit_amount_decimal: str | None = None,
        currency: str = "usd",
        product: str = "prod_fake",
    ) -> None:
        """Catalogue prices that ``pricing[price]`` may name (unit amounts in minor units)."""
        with self._lock:
            for price_id in price_ids:
                decimal = unit_amount_decimal or str(unit_amount)
                self.prices[price_id] = {
                    "id": price_id,
                    "object": "price",
                    "currency": currency,
                    "product": product,
                    "unit_amount": unit_amount,
                    "unit_amount_decimal": decimal,
                }

    def fail_next(
        self,
        count: int,
        kind: str,
        *,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        """The next ``count`` calls (to ``endpoint``, if given) fail this way:

        ``500``: Stripe fails before the endpoint runs; nothing is kept under the key.
        ``500_saved``: the endpoint fails and Stripe keeps the 500 under the idempotency key
        (``Stripe-Should-Retry: false``): the same key replays it.
        ``429`` (with ``Retry-After`` when ``retry_after`` is given), ``409`` (the key is in
        use by a request still running), ``hang`` (no answer for ``hang_seconds``, nothing
        done), ``apply_then_hang`` (done and kept under the key, then no answer).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.extend(Fault(kind, retry_after, endpoint) for _ in range(count))

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice as Stripe would answer it, with ``lines`` holding every line."""
        with self._lock:
            return self._invoice_json(self.invoices[invoice_id], all_lines=True)

    def items(
        self,
        invoice_id: str | None = None,
        customer: str | None = None,
        *,
        pending: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Invoice items that exist now, oldest first."""
        with self._lock:
            return [
                dict(item)
                for item in self.invoice_items.values()
                if (invoice_id is None or item["invoice"] == invoice_id)
                and (customer is None or item["customer"] == customer)
                and (pending is None or (item["invoice"] is None) == pending)
            ]

    def finalize(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            if invoice["status"] == "draft":
                self._finalize(invoice)

    def pay(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            if invoice["status"] == "draft":
                self._finalize(invoice)
            invoice["status"] = "paid"
            invoice["amount_paid"] = max(self._total(invoice_id), 0)
            invoice["status_transitions"]["paid_at"] = int(time.time())

    def void(self, invoice_id: str) -> None:
        with self._lock:
            invoice = self.invoices[invoice_id]
            invoice["status"] = "void"
            invoice["status_transitions"]["voided_at"] = int(time.time())

    def raise_next_invoice(
        self, customer: str, subscription: str | None = None, *, finalize: bool = True
    ) -> str:
        """Stripe raises the next invoice of ``customer`` (of its ``subscription``): every
        pending item goes on it, except items of another subscription. Finalized by default,
        as Stripe does an hour after the draft."""
        with self._lock:
            invoice = self._new_invoice(
                customer, "usd", subscription=subscription, billing_reason="subscription_cycle"
            )
            for item in self._pending_for(customer, subscription):
                item["invoice"] = invoice["id"]
                invoice["currency"] = item["currency"]
            if finalize:
                self._finalize(invoice)
            return str(invoice["id"])

    def applied(
        self, operation: str, invoice_id: str | None = None, customer: str | None = None
    ) -> list[Call]:
        """Calls of ``operation`` (e.g. ``create_invoice_item``) that changed something: done
        with a 2xx outcome (even when the answer was then lost), not replays."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.operation == operation
                and 200 <= call.status < 300
                and not call.replayed
                and (
                    invoice_id is None
                    or invoice_id in (call.path_params.get("id"), call.params.get("invoice"))
                )
                and (customer is None or call.params.get("customer") == customer)
            ]

    def calls_to(self, endpoint: str) -> list[Call]:
        """Every call to ``endpoint`` (``"POST /v1/invoiceitems"``), whatever its answer."""
        with self._lock:
            return [call for call in self.calls if call.endpoint == endpoint]

    def counts(self) -> Counter[str]:
        """How many calls each endpoint received."""
        with self._lock:
            return Counter(call.endpoint for call in self.calls)

    def peak_rate(self, endpoint: str | None = None, *, window: float = 1.0) -> int:
        """The most calls (to ``endpoint``, or to any) received within any ``window``
        seconds: what a rate limit of N per ``window`` must keep at or under N."""
        with self._lock:
            times = sorted(
                call.at for call in self.calls if endpoint is None or call.endpoint == endpoint
            )
        peak = 0
        for index, start in enumerate(times):
            # calls at [start, start + window) count against the same window
            peak = max(peak, bisect.bisect_left(times, start + window) - index)
        return peak

    # --- Stripe's side ---------------------------------------------------------------

    def _endpoint(
        self, method: str, pattern: str, operation: str
    ) -> Callable[[Request], Awaitable[Response]]:
        endpoint = f"{method} {pattern}"
        handler: Callable[[dict[str, str], dict[str, Any]], dict[str, Any]] = getattr(
            self, f"_{operation}"
        )

        async def serve(request: Request) -> Response:
            return await self._call(request, endpoint, operation, handler)

        return serve

    async def _call(
        self,
        request: Request,
        endpoint: str,
        operation: str,
        handler: Callable[[dict[str, str], dict[str, Any]], dict[str, Any]],
    ) -> Response:
        if request.method == "POST":
            pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        else:
            pairs = parse_qsl(request.url.query, keep_blank_values=True)
        version = request.headers.get("stripe-version")
        sent_key = request.headers.get("idempotency-key")
        key = sent_key if request.method == "POST" else None  # GET and DELETE ignore it
        path_params = {name: str(value) for name, value in request.path_params.items()}
        call = Call(
            request.method,
            request.url.path,
            endpoint,
            operation,
            path_params,
            {},
            sent_key,
            version,
            time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        try:
            call.params = _decode(pairs)
            self._authorise(request.headers.get("authorization", ""))
            if version is not None and not _VERSION.match(version):
                raise _Refused(400, f"Invalid Stripe API version: {version}")
            if key is not None and len(key) > 255:
                raise _Refused(
                    400, "Idempotency keys can be at most 255 characters long.", param=None
                )
        except _Refused as refused:
            return self._answer(call, refused.status, refused.body, version)
        fault = self._next_fault(endpoint)
        kind = fault.kind if fault else None
        if kind == "500":
            return self._answer(
                call, 500, _error("api_error", "An unknown error occurred"), version
            )
        if kind == "429" and fault is not None:
            response = self._answer(
                call,
                429,
                _error(
                    "invalid_request_error",
                    "Request rate limit exceeded. Learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits.",
                    code="rate_limit",
                ),
                version,
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = _seconds(fault.retry_after)
            return response
        if kind == "409":
            return self._answer(
                call,
                409,
                _error(
                    "idempotency_error",
                    "There is currently another in-progress request using this "
                    f"Idempotent Key (that probably means you submitted twice, and the other "
                    f"request is still going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                ),
                version,
            )
        if kind == "hang":
            await asyncio.sleep(self.hang_seconds)
            return self._answer(call, 504, _error("api_error", "timed out"), version)
        fingerprint = tuple(sorted(pairs))
        with self._lock:  # one request per key at a time: look up, or do and keep
            saved = self._saved.get(key) if key else None
            if saved is None:
                if kind == "500_saved":
                    status, body = 500, _error("api_error", "An unknown error occurred")
                else:
                    try:
                        status, body = 200, handler(path_params, call.params)
                    except _Refused as refused:
                        status, body = refused.status, refused.body
                if key and (status < 300 or kind == "500_saved"):
                    self._saved[key] = _Saved(endpoint, call.path, fingerprint, status, body)
                call.status = status  # done now, even if the answer is then lost
        if saved is not None:
            if (saved.endpoint, saved.path, saved.fingerprint) != (
                endpoint,
                call.path,
                fingerprint,
            ):
                return self._answer(
                    call,
                    400,
                    _error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    ),
                    version,
                )
            call.replayed = True
            response = self._answer(call, saved.status, saved.body, version)
            response.headers["Idempotent-Replayed"] = "true"
            if saved.status >= 500:
                response.headers["Stripe-Should-Retry"] = "false"
            return response
        if kind == "apply_then_hang":
            await asyncio.sleep(self.hang_seconds)
        response = self._answer(call, status, body, version)
        if kind == "500_saved":
            response.headers["Stripe-Should-Retry"] = "false"
        return response

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    self._faults.remove(fault)
                    return fault
            return None

    def _authorise(self, header: str) -> None:
        scheme, _, credentials = header.partition(" ")
        secret = ""
        if scheme.lower() == "bearer":
            secret = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                secret = base64.b64decode(credentials).decode().split(":", 1)[0]
            except ValueError:
                secret = ""
        if not secret:
            raise _Refused(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        if secret in self.restricted_keys:
            raise _Refused(
                403,
                f"The provided key '{_redact(secret)}' does not have the required "
                "permissions for this endpoint.",
            )
        if secret not in self.api_keys:
            raise _Refused(401, f"Invalid API Key provided: {_redact(secret)}")

    def _answer(
        self, call: Call, status: int, body: dict[str, Any], version: str | None
    ) -> JSONResponse:
        call.status = status
        headers = {
            "Request-Id": f"req_fake{next(self._ids)}",
            "Stripe-Version": version or API_VERSION,
        }
        return JSONResponse(body, status_code=status, headers=headers)

    async def _unrecognised(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"Unrecognized request URL ({request.method}: {request.url.path})."
        return JSONResponse(_error("invalid_request_error", message), status_code=status)

    # --- the endpoints (run under the lock; raise _Refused for an error answer) ----------

    def _create_invoice(self, _path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["create_invoice"])
        customer = _required(params, "customer")
        self._customer_exists(customer)
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise _Refused(
                400,
                f"Invalid collection_method: must be one of charge_automatically or "
                f"send_invoice (got {method!r})",
                param="collection_method",
            )
        days = _int(params, "days_until_due")
        if method == "send_invoice" and days is None:
            raise _Refused(
                400,
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                param="days_until_due",
            )
        if method == "charge_automatically" and days is not None:
            raise _Refused(
                400,
                "days_until_due can only be set when collection_method is send_invoice.",
                param="days_until_due",
            )
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include"):
            raise _Refused(
                400,
                "Invalid pending_invoice_items_behavior: must be one of exclude or include",
                param="pending_invoice_items_behavior",
            )
        subscription = params.get("subscription")
        invoice = self._new_invoice(
            customer,
            params.get("currency", "usd").lower(),
            subscription=subscription,
            billing_reason="manual",
        )
        invoice.update(
            auto_advance=_bool(params, "auto_advance", default=False),
            collection_method=method,
            days_until_due=days,
            due_date=None if days is None else invoice["created"] + days * 86400,
            description=params.get("description"),
            metadata=_metadata(params),
        )
        if behavior == "include":
            for item in self._pending_for(customer, subscription):
                if item["currency"] == invoice["currency"]:
                    item["invoice"] = invoice["id"]
        return self._invoice_json(invoice)

    def _list_invoices(self, _path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["list_invoices"])
        found = [
            self._invoice_json(invoice)
            for invoice in reversed(self.invoices.values())
            if params.get("customer", invoice["customer"]) == invoice["customer"]
            and params.get("status", invoice["status"]) == invoice["status"]
            and params.get("subscription", _subscription_of(invoice)) == _subscription_of(invoice)
        ]
        return _page(found, params, "/v1/invoices", "invoice")

    def _retrieve_invoice(self, path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["retrieve_invoice"])
        return self._invoice_json(self._find_invoice(path["id"], status=404, param="id"))

    def _finalize_invoice(self, path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["finalize_invoice"])
        invoice = self._find_invoice(path["id"], status=404, param="id")
        if invoice["status"] != "draft":
            raise _Refused(
                400,
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        if "auto_advance" in params:
            invoice["auto_advance"] = _bool(params, "auto_advance", default=False)
        self._finalize(invoice)
        return self._invoice_json(invoice)

    def _list_invoice_lines(self, path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["list_invoice_lines"])
        invoice = self._find_invoice(path["id"], status=404, param="id")
        lines = [_line(item) for item in self._items_of(invoice["id"])]
        return _page(lines, params, f"/v1/invoices/{invoice['id']}/lines", "line_item")

    def _create_invoice_item(self, _path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["create_invoice_item"])
        invoice = None
        if "invoice" in params:
            invoice = self._find_invoice(params["invoice"], status=400, param="invoice")
        customer = params.get("customer") or (invoice["customer"] if invoice else None)
        if not customer:
            raise _Refused(400, "Missing required param: customer.", param="customer")
        self._customer_exists(customer)
        if invoice is not None:
            self._check_room_on(invoice, customer)
        unit, quantity, price = self._pricing(params)
        amount = int((unit * quantity).to_integral_value(rounding=ROUND_HALF_UP))
        currency = str(
            params.get("currency")
            or (invoice["currency"] if invoice else None)
            or (price["currency"] if price else "usd")
        ).lower()
        if invoice is not None and currency != invoice["currency"]:
            raise _Refused(
                400,
                f"The invoice item's currency ({currency}) must match the invoice's "
                f"({invoice['currency']}).",
                param="currency",
            )
        if price is not None and currency != price["currency"]:
            raise _Refused(
                400,
                f"The price {price['id']} is in {price['currency']}, not {currency}.",
                param="pricing[price]",
            )
        subscription = params.get("subscription") or (
            _subscription_of(invoice) if invoice else None
        )
        item = {
            "id": f"ii_fake{next(self._ids)}",
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer,
            "date": int(time.time()),
            "description": params.get("description"),
            "discountable": _bool(params, "discountable", default=amount >= 0),
            "discounts": [],
            "invoice": invoice["id"] if invoice else None,
            "livemode": False,
            "metadata": _metadata(params),
            "net_amount": amount,
            "parent": None
            if subscription is None
            else {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription, "subscription_item": None},
            },
            "period": _period(params),
            "pricing": {
                "type": "price_details",
                "price_details": None
                if price is None
                else {"price": price["id"], "product": price["product"]},
                "unit_amount_decimal": _plain(unit),
            },
            "proration": False,
            "proration_details": {"credited_items": None, "discount_amounts": []},
            "quantity": int(quantity.to_integral_value(rounding=ROUND_HALF_UP)),
            "quantity_decimal": _plain(quantity),
            "tax_rates": [],
            "test_clock": None,
        }
        self.invoice_items[item["id"]] = item
        return dict(item)

    def _check_room_on(self, invoice: dict[str, Any], customer: str) -> None:
        """An item may go on a draft invoice of its customer with fewer than 250 items."""
        if invoice["customer"] != customer:
            raise _Refused(
                400,
                f"The invoice {invoice['id']} belongs to customer {invoice['customer']}, "
                f"not {customer}.",
                param="invoice",
            )
        if invoice["status"] != "draft":
            raise _Refused(
                400,
                f"Invoice {invoice['id']} is {invoice['status']}: invoice items can only "
                "be added to a draft invoice.",
                code="invoice_not_editable",
                param="invoice",
            )
        if len(self._items_of(invoice["id"])) >= MAX_ITEMS_PER_INVOICE:
            raise _Refused(
                400,
                f"An invoice can hold at most {MAX_ITEMS_PER_INVOICE} invoice items; "
                f"{invoice['id']} is full.",
                param="invoice",
            )

    def _pricing(self, params: dict[str, Any]) -> tuple[Decimal, Decimal, dict[str, Any] | None]:
        """(unit amount in minor units, quantity, catalogue price) from exactly one of
        ``pricing[price]`` + quantity, ``unit_amount_decimal`` + quantity, or ``amount``."""
        if "price_data" in params:
            raise _Refused(400, "FakeStripe does not implement price_data.", param="price_data")
        forms = [name for name in ("pricing", "unit_amount_decimal", "amount") if name in params]
        if len(forms) != 1:
            raise _Refused(
                400,
                "Give exactly one of pricing[price], unit_amount_decimal or amount "
                f"(got {', '.join(forms) or 'none'}).",
                param=forms[1] if len(forms) > 1 else "amount",
            )
        quantity = _quantity(params)
        if forms == ["amount"]:
            if quantity is not None:
                raise _Refused(400, "quantity cannot be given with amount.", param="quantity")
            return Decimal(_int(params, "amount") or 0), Decimal(1), None
        if quantity is None:
            quantity = Decimal(1)
        if forms == ["unit_amount_decimal"]:
            return _decimal(params, "unit_amount_decimal", places=12), quantity, None
        price_id = params["pricing"].get("price")
        if not price_id:
            raise _Refused(
                400,
                "Missing required param: pricing[price].",
                code="parameter_missing",
                param="pricing[price]",
            )
        price = self.prices.get(price_id)
        if price is None:
            raise _Refused(
                400, f"No such price: '{price_id}'", code="resource_missing", param="pricing[price]"
            )
        return Decimal(price["unit_amount_decimal"]), quantity, price

    def _list_invoice_items(self, _path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["list_invoice_items"])
        pending = _bool(params, "pending", default=None)
        found = [
            dict(item)
            for item in reversed(self.invoice_items.values())
            if params.get("customer", item["customer"]) == item["customer"]
            and params.get("invoice", item["invoice"]) == item["invoice"]
            and (pending is None or (item["invoice"] is None) == pending)
        ]
        return _page(found, params, "/v1/invoiceitems", "invoiceitem")

    def _retrieve_invoice_item(
        self, path: dict[str, str], params: dict[str, Any]
    ) -> dict[str, Any]:
        _check(params, _SCHEMAS["retrieve_invoice_item"])
        return dict(self._find_item(path["id"]))

    def _delete_invoice_item(self, path: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        _check(params, _SCHEMAS["delete_invoice_item"])
        item = self._find_item(path["id"])
        if item["invoice"] is not None:
            invoice = self.invoices[item["invoice"]]
            if invoice["status"] != "draft":
                raise _Refused(
                    400,
                    f"Invoice item {item['id']} is on invoice {invoice['id']}, which is "
                    f"{invoice['status']}: only pending items and items on a draft invoice "
                    "can be deleted.",
                    code="invoice_not_editable",
                )
        del self.invoice_items[item["id"]]
        return {"id": item["id"], "object": "invoiceitem", "deleted": True}

    # --- the state behind them ----------------------------------------------------------

    def _new_invoice(
        self, customer: str, currency: str, *, subscription: str | None, billing_reason: str
    ) -> dict[str, Any]:
        now = int(time.time())
        invoice: dict[str, Any] = {
            "id": f"in_fake{next(self._ids)}",
            "object": "invoice",
            "amount_paid": 0,
            "auto_advance": False,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "customer": customer,
            "days_until_due": None,
            "description": None,
            "discounts": [],
            "due_date": None,
            "livemode": False,
            "metadata": {},
            "number": None,
            "parent": None
            if subscription is None
            else {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"subscription": subscription, "metadata": {}},
            },
            "period_end": now,
            "period_start": now,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
        }
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _finalize(self, invoice: dict[str, Any]) -> None:
        invoice["status"] = "open"
        invoice["number"] = f"FAKE-{next(self._numbers):04d}"
        invoice["status_transitions"]["finalized_at"] = int(time.time())
        if self._total(invoice["id"]) <= 0:
            invoice["status"] = "paid"
            invoice["status_transitions"]["paid_at"] = int(time.time())

    def _items_of(self, invoice_id: str) -> list[dict[str, Any]]:
        return [item for item in self.invoice_items.values() if item["invoice"] == invoice_id]

    def _pending_for(self, customer: str, subscription: str | None) -> list[dict[str, Any]]:
        return [
            item
            for item in self.invoice_items.values()
            if item["invoice"] is None
            and item["customer"] == customer
            and _subscription_of(item) in (None, subscription)
        ]

    def _total(self, invoice_id: str) -> int:
        return sum(item["amount"] for item in self._items_of(invoice_id))

    def _invoice_json(self, invoice: dict[str, Any], *, all_lines: bool = False) -> dict[str, Any]:
        lines = [_line(item) for item in self._items_of(invoice["id"])]
        shown = lines if all_lines else lines[:10]
        total = sum(line["amount"] for line in lines)
        due = max(total, 0)
        return {
            **invoice,
            "metadata": dict(invoice["metadata"]),
            "status_transitions": dict(invoice["status_transitions"]),
            "amount_due": due,
            "amount_remaining": max(due - invoice["amount_paid"], 0),
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
            "lines": {
                "object": "list",
                "data": shown,
                "has_more": len(shown) < len(lines),
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice['id']}/lines",
            },
        }

    def _find_invoice(self, invoice_id: str, *, status: int, param: str) -> dict[str, Any]:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise _Refused(
                status, f"No such invoice: '{invoice_id}'", code="resource_missing", param=param
            )
        return invoice

    def _find_item(self, item_id: str) -> dict[str, Any]:
        item = self.invoice_items.get(item_id)
        if item is None:
            raise _Refused(
                404, f"No such invoiceitem: '{item_id}'", code="resource_missing", param="id"
            )
        return item

    def _customer_exists(self, customer: str) -> None:
        if self.customers is not None and customer not in self.customers:
            raise _Refused(
                400, f"No such customer: '{customer}'", code="resource_missing", param="customer"
            )


# --- Stripe's encoding and shapes ---------------------------------------------------------


def _error(
    type_: str, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return {"error": error}


def _decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``period[start]=1`` → ``{"period": {"start": "1"}}``; ``expand[0]=x`` → a list."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        match = _PARAM.match(name)
        if match is None:
            raise _Refused(400, f"Invalid parameter name: {name}", param=name)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise _Refused(400, f"Invalid hash: {'.'.join(parts[: depth + 1])}", param=name)
            node = child
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise _Refused(400, f"Invalid string: {name}", param=name)
        node[last] = value
    return _lists(root)


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    for name, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            if value and all(key.isdigit() for key in value):
                value = [value[key] for key in sorted(value, key=int)]
            node[name] = value
    return node


def _check(params: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> None:
    for name, value in params.items():
        full = f"{prefix}[{name}]" if prefix else name
        spec = schema.get(name)
        if spec is None:
            raise _Refused(
                400, f"Received unknown parameter: {full}", code="parameter_unknown", param=full
            )
        if spec == S and not isinstance(value, str):
            raise _Refused(400, f"Invalid string: {full}", param=full)
        if spec == MAP and not (
            value == ""
            or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
        ):
            raise _Refused(400, f"Invalid hash: {full}", param=full)
        if spec == LIST and not isinstance(value, list):
            raise _Refused(400, f"Invalid array: {full}", param=full)
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                raise _Refused(400, f"Invalid hash: {full}", param=full)
            _check(value, spec, full)


def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _Refused(
            400, f"Missing required param: {name}.", code="parameter_missing", param=name
        )
    return str(value)


def _int(params: dict[str, Any], name: str, *, param: str | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise _Refused(400, f"Invalid integer: {value}", param=param or name) from None


def _bool(params: dict[str, Any], name: str, *, default: bool | None) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise _Refused(400, f"Invalid boolean: {value}", param=name)
    return value == "true"


def _decimal(params: dict[str, Any], name: str, *, places: int) -> Decimal:
    value = params.get(name, "")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Refused(400, f"Invalid decimal: {value}", param=name) from None
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > places:
        raise _Refused(
            400, f"Invalid decimal: {value} (at most {places} decimal places)", param=name
        )
    return number


def _quantity(params: dict[str, Any]) -> Decimal | None:
    if "quantity" in params and "quantity_decimal" in params:
        raise _Refused(
            400, "quantity and quantity_decimal cannot both be given.", param="quantity_decimal"
        )
    if "quantity" in params:
        quantity = Decimal(_int(params, "quantity") or 0)
    elif "quantity_decimal" in params:
        quantity = _decimal(params, "quantity_decimal", places=12)
    else:
        return None
    if quantity < 0:
        name = "quantity" if "quantity" in params else "quantity_decimal"
        raise _Refused(400, f"{name} must be non-negative.", param=name)
    return quantity


def _period(params: dict[str, Any]) -> dict[str, int]:
    """Both ends or neither (then both are now); inclusive, end not before start."""
    now = str(int(time.time()))
    period = params.get("period") or {"start": now, "end": now}
    for end_of_period in ("start", "end"):
        if end_of_period not in period:
            raise _Refused(
                400,
                f"Missing required param: period[{end_of_period}].",
                code="parameter_missing",
                param=f"period[{end_of_period}]",
            )
    start = _int(period, "start", param="period[start]") or 0
    end = _int(period, "end", param="period[end]") or 0
    if end < start:
        raise _Refused(
            400, "period[end] must be greater than or equal to period[start].", param="period[end]"
        )
    return {"start": start, "end": end}


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    metadata = params.get("metadata") or {}
    if len(metadata) > 50:
        raise _Refused(400, "Metadata can have at most 50 keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 40:
            raise _Refused(
                400, f"Metadata keys can be at most 40 characters: {key}", param=f"metadata[{key}]"
            )
        if len(value) > 500:
            raise _Refused(
                400, "Metadata values can be at most 500 characters.", param=f"metadata[{key}]"
            )
    return dict(metadata)


def _page(
    objects: list[dict[str, Any]], params: dict[str, Any], url: str, kind: str
) -> dict[str, Any]:
    limit = _int(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise _Refused(
            400, f"Invalid limit: must be between 1 and 100 (got {limit})", param="limit"
        )
    if "ending_before" in params:
        raise _Refused(400, "FakeStripe does not implement ending_before.", param="ending_before")
    start = 0
    after = params.get("starting_after")
    if after is not None:
        ids = [obj["id"] for obj in objects]
        if after not in ids:
            raise _Refused(
                400, f"No such {kind}: '{after}'", code="resource_missing", param="starting_after"
            )
        start = ids.index(after) + 1
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "has_more": start + limit < len(objects),
        "url": url,
    }


def _line(item: dict[str, Any]) -> dict[str, Any]:
    subscription = _subscription_of(item)
    return {
        "id": "il_" + item["id"].removeprefix("ii_"),
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": item["invoice"],
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
            },
            "subscription_item_details": None,
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": item["pricing"],
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subtotal": item["amount"],
        "taxes": [],
    }


def _subscription_of(obj: dict[str, Any]) -> str | None:
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or {}
    subscription = details.get("subscription")
    return str(subscription) if subscription else None


def _plain(number: Decimal) -> str:
    return format(number, "f")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _redact(secret: str) -> str:
    prefix = secret[: secret.find("_", secret.find("_") + 1) + 1] if secret.count("_") >= 2 else ""
    return f"{prefix}{'*' * max(len(secret) - len(prefix) - 4, 0)}{secret[-4:]}"
