"""A fake Chargebee: a real HTTP server the tests start, implementing the part of API v2
meterbridge uses, with Chargebee's JSON shapes and error format, basic auth with the API
key, idempotency-key replays, and fault injection.

    fake = FakeChargebee().start()
    fake.pending_invoice("cus_1")                  # Chargebee raised the subscription's invoice
    fake.fail_next(2, "500")                       # the next two API calls answer 500
    fake.fail_next(1, "429", retry_after=2)        # ... 429 with Retry-After: 2
    fake.fail_next(1, "hang")                      # ... hang past the client's timeout
    fake.fail_next(1, "apply_then_hang")           # ... do the work, then hang (answer lost)
    fake.lines(invoice_id)                         # what the invoice holds now
    fake.applied("add_charge_item")                # writes really applied (replays excluded)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.processes import free_port, serve_in_thread, stop_server

API_KEY = "test_cb_key"


@dataclass
class Fault:
    kind: str  # "500" | "429" | "hang" | "apply_then_hang"
    retry_after: int | None = None


@dataclass
class Call:
    method: str
    path: str
    form: dict[str, str]
    key: str | None
    status: int = 0
    replayed: bool = False


@dataclass
class FakeChargebee:
    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    item_prices: dict[str, int] = field(default_factory=dict)  # id → catalogue unit price
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    hang_seconds: float = 5.0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._replays: dict[str, tuple[int, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.port = free_port()
        self._server: uvicorn.Server | None = None

    # --- the tests' side -------------------------------------------------------------

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{site}}/api/v2"

    def start(self) -> FakeChargebee:
        app = Starlette(
            routes=[
                Route("/{site}/api/v2/invoices", self._list, methods=["GET"]),
                Route(
                    "/{site}/api/v2/invoices/create_for_charge_items_and_charges",
                    self._create,
                    methods=["POST"],
                ),
                Route("/{site}/api/v2/invoices/{id}", self._retrieve, methods=["GET"]),
                Route("/{site}/api/v2/invoices/{id}/add_charge_item", self._add, methods=["POST"]),
                Route(
                    "/{site}/api/v2/invoices/{id}/delete_line_items", self._delete, methods=["POST"]
                ),
                Route("/{site}/api/v2/invoices/{id}/void", self._void, methods=["POST"]),
            ]
        )
        self._server = serve_in_thread(app, self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def price(self, *item_price_ids: str, unit_price: int = 100) -> None:
        with self._lock:
            for item_price_id in item_price_ids:
                self.item_prices[item_price_id] = unit_price

    def pending_invoice(self, customer_id: str, currency: str = "USD") -> str:
        with self._lock:
            invoice_id = f"inv_{next(self._ids)}"
            self.invoices[invoice_id] = {
                "id": invoice_id,
                "customer_id": customer_id,
                "status": "pending",
                "currency_code": currency,
                "date": int(time.time()),
                "line_items": [],
                "total": 0,
            }
            return invoice_id

    def fail_next(self, count: int, kind: str, *, retry_after: int | None = None) -> None:
        with self._lock:
            self._faults.extend(Fault(kind, retry_after) for _ in range(count))

    def lines(self, invoice_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(line) for line in self.invoices[invoice_id]["line_items"]]

    def invoices_of(self, customer_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self.invoices.values() if i["customer_id"] == customer_id]

    def applied(self, operation: str, invoice_id: str | None = None) -> list[Call]:
        """Calls that changed something (answered 2xx, not replays)."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.path.endswith(operation)
                and 200 <= call.status < 300
                and not call.replayed
                and (invoice_id is None or f"/{invoice_id}/" in call.path)
            ]

    def calls_for(self, customer_id: str) -> list[Call]:
        with self._lock:
            ids = {i["id"] for i in self.invoices.values() if i["customer_id"] == customer_id}
            return [
                call
                for call in self.calls
                if any(f"/{i}/" in call.path or call.path.endswith(f"/{i}") for i in ids)
                or call.form.get("customer_id") == customer_id
            ]

    # --- Chargebee's side ------------------------------------------------------------

    async def _call(self, request: Request, operation: Any) -> JSONResponse:
        body = (await request.body()).decode() if request.method == "POST" else ""
        form = dict(parse_qsl(body))
        key = request.headers.get("chargebee-idempotency-key")
        call = Call(request.method, request.url.path, form, key)
        with self._lock:
            self.calls.append(call)
        if not self._authorised(request):
            return self._answer(
                call,
                401,
                _error(
                    401,
                    "api_authentication_failed",
                    "Sorry, authentication failed. Invalid api key",
                ),
            )
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            replay = self._replays.get(key) if key else None
        if fault and fault.kind == "500":
            return self._answer(
                call, 500, _error(500, "internal_error", "Sorry, something went wrong")
            )
        if fault and fault.kind == "429":
            response = self._answer(
                call, 429, _error(429, "api_request_limit_exceeded", "Too many requests")
            )
            response.headers["Retry-After"] = str(fault.retry_after or 1)
            return response
        if fault and fault.kind == "hang":
            await asyncio.sleep(self.hang_seconds)
            return self._answer(call, 504, _error(504, "gateway_timeout", "timed out"))
        if replay is not None:
            call.replayed = True
            response = self._answer(call, *replay)
            response.headers["chargebee-idempotency-replayed"] = "true"
            return response
        with self._lock:
            status, body = operation(request.path_params, form, dict(request.query_params))
            if key and status < 300:
                self._replays[key] = (status, body)
        if fault and fault.kind == "apply_then_hang":
            await asyncio.sleep(self.hang_seconds)
        return self._answer(call, status, body)

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        return user in self.api_keys

    def _answer(self, call: Call, status: int, body: dict[str, Any]) -> JSONResponse:
        call.status = status
        return JSONResponse(body, status_code=status)

    async def _list(self, request: Request) -> JSONResponse:
        def operation(_path: dict, _form: dict, query: dict) -> tuple[int, dict[str, Any]]:
            found = [
                i
                for i in self.invoices.values()
                if i["customer_id"] == query.get("customer_id[is]", i["customer_id"])
                and i["status"] == query.get("status[is]", i["status"])
            ]
            found.sort(key=lambda i: i["date"], reverse=query.get("sort_by[desc]") == "date")
            limit = int(query.get("limit", 10))
            return 200, {"list": [{"invoice": _copy(i)} for i in found[:limit]]}

        return await self._call(request, operation)

    async def _retrieve(self, request: Request) -> JSONResponse:
        def operation(path: dict, _form: dict, _query: dict) -> tuple[int, dict[str, Any]]:
            invoice = self.invoices.get(path["id"])
            if invoice is None:
                return 404, _error(
                    404, "resource_not_found", "Sorry, we couldn't find that resource"
                )
            return 200, {"invoice": _copy(invoice)}

        return await self._call(request, operation)

    async def _add(self, request: Request) -> JSONResponse:
        def operation(path: dict, form: dict, _query: dict) -> tuple[int, dict[str, Any]]:
            invoice = self.invoices.get(path["id"])
            if invoice is None:
                return 404, _error(
                    404, "resource_not_found", "Sorry, we couldn't find that resource"
                )
            if invoice["status"] != "pending":
                return 400, _error(400, "invalid_state_for_request", "invoice is not pending")
            line = self._line(form, "item_price[{}]")
            if isinstance(line, tuple):
                return line
            invoice["line_items"].append(line)
            _total(invoice)
            return 200, {"invoice": _copy(invoice)}

        return await self._call(request, operation)

    async def _delete(self, request: Request) -> JSONResponse:
        def operation(path: dict, form: dict, _query: dict) -> tuple[int, dict[str, Any]]:
            invoice = self.invoices.get(path["id"])
            if invoice is None or invoice["status"] != "pending":
                return 400, _error(400, "invalid_state_for_request", "invoice is not pending")
            ids = [v for k, v in form.items() if k.startswith("line_items[id]")]
            present = {line["id"] for line in invoice["line_items"]}
            if not ids or any(i not in present for i in ids):
                return 400, _error(400, "resource_not_found", "line_items[id]: unknown line item")
            invoice["line_items"] = [
                line for line in invoice["line_items"] if line["id"] not in ids
            ]
            _total(invoice)
            return 200, {"invoice": _copy(invoice)}

        return await self._call(request, operation)

    async def _create(self, request: Request) -> JSONResponse:
        def operation(_path: dict, form: dict, _query: dict) -> tuple[int, dict[str, Any]]:
            customer = form.get("customer_id")
            if not customer:
                return 400, _error(400, "param_missing", "customer_id : cannot be blank")
            lines = []
            for index in itertools.count():
                if f"item_prices[item_price_id][{index}]" not in form:
                    break
                line = self._line(form, "item_prices[{}]" + f"[{index}]")
                if isinstance(line, tuple):
                    return line
                lines.append(line)
            invoice_id = f"inv_{next(self._ids)}"
            invoice = {
                "id": invoice_id,
                "customer_id": customer,
                "status": "payment_due",
                "currency_code": form.get("currency_code", "USD"),
                "date": int(time.time()),
                "line_items": lines,
            }
            _total(invoice)
            self.invoices[invoice_id] = invoice
            return 200, {"invoice": _copy(invoice)}

        return await self._call(request, operation)

    async def _void(self, request: Request) -> JSONResponse:
        def operation(path: dict, _form: dict, _query: dict) -> tuple[int, dict[str, Any]]:
            invoice = self.invoices.get(path["id"])
            if invoice is None:
                return 404, _error(
                    404, "resource_not_found", "Sorry, we couldn't find that resource"
                )
            if invoice["status"] in ("paid", "voided", "pending"):
                return 400, _error(
                    400, "invalid_state_for_request", f"invoice is {invoice['status']}"
                )
            invoice["status"] = "voided"
            return 200, {"invoice": _copy(invoice)}

        return await self._call(request, operation)

    def _line(self, form: dict[str, str], pattern: str) -> dict[str, Any] | tuple[int, dict]:
        def get(name: str) -> str | None:
            return form.get(pattern.format(name))

        item_price_id = get("item_price_id")
        if not item_price_id:
            return 400, _error(400, "param_missing", "item_price[item_price_id] : cannot be blank")
        if item_price_id not in self.item_prices:
            return 400, _error(
                400,
                "resource_not_found",
                f"item_price_id : The item price {item_price_id} is not present",
            )
        quantity_decimal, price_decimal = get("quantity_in_decimal"), get("unit_price_in_decimal")
        quantity = int(get("quantity") or 1)
        unit = (
            int(get("unit_price"))
            if get("unit_price") is not None
            else self.item_prices[item_price_id]
        )
        if quantity_decimal is not None or price_decimal is not None:
            amount_decimal = Decimal(quantity_decimal or 1) * Decimal(price_decimal or 0)
            amount = int((amount_decimal * 100).to_integral_value())
        else:
            amount, amount_decimal = quantity * unit, None
        return {
            "id": f"li_{next(self._ids)}",
            "entity_type": "charge_item_price",
            "entity_id": item_price_id,
            "quantity": quantity,
            "unit_amount": unit,
            "amount": amount,
            "quantity_in_decimal": quantity_decimal,
            "unit_amount_in_decimal": price_decimal,
            "amount_in_decimal": None if amount_decimal is None else str(amount_decimal),
            "date_from": int(get("date_from") or 0),
            "date_to": int(get("date_to") or 0),
            "description": item_price_id,
        }


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    kind = "invalid_request" if status == 400 else None
    body: dict[str, Any] = {
        "message": message,
        "api_error_code": code,
        "error_code": code,
        "error_msg": message,
        "http_status_code": status,
    }
    if kind:
        body["type"] = kind
    return body


def _total(invoice: dict[str, Any]) -> None:
    invoice["total"] = sum(line["amount"] for line in invoice["line_items"])


def _copy(invoice: dict[str, Any]) -> dict[str, Any]:
    return {**invoice, "line_items": [dict(line) for line in invoice["line_items"]]}
