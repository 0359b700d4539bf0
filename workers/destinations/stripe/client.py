"""A small client for the part of Stripe's v1 API meterbridge uses (invoices and invoice
items), over httpx:

- form-encoded bodies with Stripe's bracket nesting (``metadata[bill_id]``, ``period[start]``,
  ``pricing[price]``), built by ``encode`` from plain dicts;
- ``Authorization: Bearer <secret key>`` and ``Stripe-Version: STRIPE_VERSION`` on every call;
- an ``Idempotency-Key`` on every write, given by the caller (Stripe keeps a POST's answer
  under its key for at least 24 hours; GET and DELETE ignore keys, so a DELETE that finds
  nothing says so instead of failing);
- errors turned into meterbridge's types: 429, 409, 5xx, timeouts and connection failures →
  ``TransientError`` (with ``Retry-After``; a 429 is its ``RateLimited``, a 5xx that Stripe
  keeps under the idempotency key its ``KeptFailure``); 401 and 403 →
  ``AuthenticationFailed``; any other 4xx → ``StripeRefused`` (a ``PerformFailed``)
  carrying Stripe's ``error.message``;
- ``before_request(endpoint)`` runs before every request, each page of a list included, with
  the endpoint's key (``"POST /v1/invoiceitems"``, ``"DELETE /v1/invoiceitems/{id}"``): the
  seam for a rate limiter shared by the workers. It may wait, or raise to give up the turn.

The pinned version is the one the installed ``stripe`` SDK speaks, so the SDK test of the
fake checks the same shapes this client reads. In it invoice items are priced by
``pricing[price]`` (not ``price``, gone since 2025-03-31.basil), by ``unit_amount_decimal``
(minor units, up to 12 places) or by ``amount``; ``quantity_decimal`` (since 2026-03-25.dahlia)
carries a fractional quantity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import structlog

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from workers.destinations.http import retry_after, try_again_later

log = structlog.get_logger(__name__)

STRIPE_VERSION = "2026-10-28.endive"
MAX_ITEMS_PER_INVOICE = 250  # Stripe refuses the 251st invoice item on one invoice
_PAGE = 100  # the largest page Stripe lists

CollectionMethod = Literal["charge_automatically", "send_invoice"]
InvoiceStatus = Literal["draft", "open", "paid", "uncollectible", "void"]


class RateLimited(TransientError):
    """429: over one of Stripe's rate limits (the account's or the endpoint's)."""


class KeptFailure(TransientError):
    """A 5xx that Stripe keeps under the request's idempotency key (``Stripe-Should-Retry:
    false``, or a replay of a kept answer): sending the same key again answers the same for
    as long as Stripe keeps it (24 hours or more). Only a new key can succeed, once the
    caller has made sure that the first request left nothing behind."""


class StripeRefused(PerformFailed):
    """Stripe refused a request (a 4xx other than 401, 403, 409 and 429)."""

    def __init__(self, message: str, *, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# --- what goes out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ByPrice:
    """A catalogue price times a quantity: ``pricing[price]`` + ``quantity``."""

    price: str
    quantity: Decimal | int


@dataclass(frozen=True, slots=True)
class ByUnitAmount:
    """A unit amount in minor units (up to 12 places; negative for a credit) times a
    quantity."""

    unit_amount_decimal: Decimal
    quantity: Decimal | int


@dataclass(frozen=True, slots=True)
class ByAmount:
    """A total in minor units; negative for a credit."""

    amount: int


Pricing = ByPrice | ByUnitAmount | ByAmount


def invoice_item_params(
    *,
    customer: str,
    currency: str,
    description: str,
    pricing: Pricing,
    period: tuple[int, int] | None = None,
    metadata: Mapping[str, str] | None = None,
    invoice: str | None = None,
    subscription: str | None = None,
) -> dict[str, Any]:
    """The parameters of ``POST /v1/invoiceitems``; ``period`` is (start, end) in Unix
    seconds, both inclusive. Without ``invoice`` the item is pending on the customer (on its
    ``subscription``) until Stripe raises the next invoice."""
    params: dict[str, Any] = {
        "customer": customer,
        "currency": currency.lower(),
        "description": description,
        "invoice": invoice,
        "subscription": subscription,
        "metadata": dict(metadata) if metadata else None,
    }
    if period is not None:
        params["period"] = {"start": period[0], "end": period[1]}
    match pricing:
        case ByPrice(price, quantity):
            params["pricing"] = {"price": price}
            params.update(_quantity(quantity))
        case ByUnitAmount(unit_amount_decimal, quantity):
            params["unit_amount_decimal"] = unit_amount_decimal
            params.update(_quantity(quantity))
        case ByAmount(amount):
            params["amount"] = amount
    return params


def encode(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Stripe's form encoding: nested mappings as ``a[b]``, sequences as ``a[0]``, booleans
    as ``true``/``false``, decimals in plain notation; ``None`` is left out. Floats are
    refused: money and quantities go as ``Decimal`` or ``int``."""
    pairs: list[tuple[str, str]] = []

    def walk(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{name}[{key}]" if name else str(key), inner)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for index, inner in enumerate(value):
                walk(f"{name}[{index}]", inner)
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, Decimal):
            pairs.append((name, format(value, "f")))
        elif isinstance(value, float):
            raise TypeError(f"{name}: send a Decimal or an int to Stripe, not a float")
        else:
            pairs.append((name, str(value)))

    walk("", params)
    return pairs


def _quantity(quantity: Decimal | int) -> dict[str, Any]:
    """A whole quantity as ``quantity``; a fractional one as ``quantity_decimal``."""
    number = Decimal(quantity)
    if number == number.to_integral_value():
        return {"quantity": int(number)}
    return {"quantity_decimal": number}


# --- what comes back -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    status: str  # draft | open | paid | uncollectible | void
    customer: str
    currency: str
    collection_method: str
    total: int  # minor units
    metadata: dict[str, str]
    subscription: str | None

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Invoice:
        parent = data.get("parent") or {}
        details = parent.get("subscription_details") or {}
        return cls(
            id=data["id"],
            status=data.get("status") or "",
            customer=_id(data.get("customer")) or "",
            currency=data.get("currency", ""),
            collection_method=data.get("collection_method", ""),
            total=int(data.get("total") or 0),
            metadata=dict(data.get("metadata") or {}),
            subscription=_id(details.get("subscription")),
        )


@dataclass(frozen=True, slots=True)
class InvoiceItem:
    id: str
    customer: str
    invoice: str | None  # None: pending, waiting for the customer's next invoice
    subscription: str | None
    currency: str
    amount: int  # minor units, as Stripe rounded it
    description: str | None
    quantity: Decimal
    unit_amount_decimal: Decimal | None
    price: str | None
    period: tuple[int, int]
    metadata: dict[str, str]

    @property
    def pending(self) -> bool:
        return self.invoice is None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InvoiceItem:
        pricing = data.get("pricing") or {}
        price_details = pricing.get("price_details") or {}
        parent = data.get("parent") or {}
        details = parent.get("subscription_details") or {}
        period = data.get("period") or {}
        quantity = data.get("quantity_decimal") or data.get("quantity") or 0
        unit = pricing.get("unit_amount_decimal")
        return cls(
            id=data["id"],
            customer=_id(data.get("customer")) or "",
            invoice=_id(data.get("invoice")),
            subscription=_id(details.get("subscription")),
            currency=data.get("currency", ""),
            amount=int(data.get("amount") or 0),
            description=data.get("description"),
            quantity=Decimal(str(quantity)),
            unit_amount_decimal=None if unit is None else Decimal(str(unit)),
            price=_id(price_details.get("price")),
            period=(int(period.get("start") or 0), int(period.get("end") or 0)),
            metadata=dict(data.get("metadata") or {}),
        )


def _id(value: Any) -> str | None:
    """An id, whether Stripe answered it as a string or as an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


# --- the client ----------------------------------------------------------------------------


class StripeClient:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        *,
        before_request: Callable[[str], None] | None = None,
    ) -> None:
        self._before_request = before_request
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Stripe-Version": STRIPE_VERSION,
                "Accept": "application/json",
                "User-Agent": "meterbridge",
            },
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StripeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # invoices

    def create_invoice(
        self,
        *,
        customer: str,
        currency: str,
        collection_method: CollectionMethod,
        key: str,
        days_until_due: int | None = None,
        metadata: Mapping[str, str] | None = None,
        subscription: str | None = None,
        auto_advance: bool = False,
        pending_invoice_items_behavior: Literal["exclude", "include"] = "exclude",
    ) -> Invoice:
        """A draft invoice; ``days_until_due`` is needed with ``send_invoice`` only."""
        params = {
            "customer": customer,
            "currency": currency.lower(),
            "collection_method": collection_method,
            "days_until_due": days_until_due,
            "auto_advance": auto_advance,
            "pending_invoice_items_behavior": pending_invoice_items_behavior,
            "subscription": subscription,
            "metadata": dict(metadata) if metadata else None,
        }
        data = self._post("/v1/invoices", "/v1/invoices", params, key)
        return Invoice.from_json(data)

    def invoice(self, invoice_id: str) -> Invoice:
        return Invoice.from_json(
            self._request("GET", f"/v1/invoices/{invoice_id}", "/v1/invoices/{id}")
        )

    def list_invoices(
        self,
        *,
        customer: str,
        status: InvoiceStatus | None = None,
        subscription: str | None = None,
    ) -> list[Invoice]:
        """Every invoice of the customer (with that status, of that subscription), newest
        first."""
        query = {"customer": customer, "status": status, "subscription": subscription}
        return [Invoice.from_json(data) for data in self._list("/v1/invoices", query)]

    def finalize_invoice(
        self, invoice_id: str, *, key: str, auto_advance: bool | None = None
    ) -> Invoice:
        data = self._post(
            f"/v1/invoices/{invoice_id}/finalize",
            "/v1/invoices/{id}/finalize",
            {"auto_advance": auto_advance},
            key,
        )
        return Invoice.from_json(data)

    # invoice items

    def create_invoice_item(
        self,
        *,
        key: str,
        customer: str,
        currency: str,
        description: str,
        pricing: Pricing,
        period: tuple[int, int] | None = None,
        metadata: Mapping[str, str] | None = None,
        invoice: str | None = None,
        subscription: str | None = None,
    ) -> InvoiceItem:
        """One invoice item: on ``invoice`` (a draft), or pending on the customer."""
        params = invoice_item_params(
            customer=customer,
            currency=currency,
            description=description,
            pricing=pricing,
            period=period,
            metadata=metadata,
            invoice=invoice,
            subscription=subscription,
        )
        return InvoiceItem.from_json(
            self._post("/v1/invoiceitems", "/v1/invoiceitems", params, key)
        )

    def create_invoice_item_from_form(
        self,
        form: Mapping[str, str],
        *,
        key: str,
        customer: str,
        invoice: str | None = None,
        subscription: str | None = None,
    ) -> InvoiceItem:
        """One invoice item from fields already in Stripe's flat form (``period[start]``,
        ``pricing[price]``, ``metadata[...]``), such as the ledger recorded before sending:
        what goes out is exactly that, plus the customer, invoice and subscription."""
        params = {**form, "customer": customer, "invoice": invoice, "subscription": subscription}
        return InvoiceItem.from_json(
            self._post("/v1/invoiceitems", "/v1/invoiceitems", params, key)
        )

    def list_invoice_items(
        self,
        *,
        customer: str | None = None,
        invoice: str | None = None,
        pending: bool | None = None,
    ) -> list[InvoiceItem]:
        """Every invoice item matching, newest first: those on ``invoice``, or the
        customer's (only the pending ones with ``pending=True``)."""
        query = {"customer": customer, "invoice": invoice, "pending": pending}
        return [InvoiceItem.from_json(data) for data in self._list("/v1/invoiceitems", query)]

    def invoice_item(self, item_id: str) -> InvoiceItem | None:
        """The invoice item; None when it no longer exists."""
        try:
            data = self._request("GET", f"/v1/invoiceitems/{item_id}", "/v1/invoiceitems/{id}")
        except StripeRefused as refused:
            if refused.status == 404 and refused.code == "resource_missing":
                return None
            raise
        return InvoiceItem.from_json(data)

    def delete_invoice_item(self, item_id: str, *, key: str) -> bool:
        """True when this call deleted the item, False when it was already gone (a DELETE
        whose answer was lost is not replayed by Stripe: the retry finds nothing). Stripe
        refuses (``StripeRefused``) an item on an invoice that is no longer a draft."""
        try:
            self._request("DELETE", f"/v1/invoiceitems/{item_id}", "/v1/invoiceitems/{id}", key=key)
        except StripeRefused as refused:
            if refused.status == 404 and refused.code == "resource_missing":
                return False
            raise
        return True

    # the HTTP part

    def _post(self, path: str, pattern: str, params: Mapping[str, Any], key: str) -> Any:
        return self._request("POST", path, pattern, form=encode(params), key=key)

    def _list(self, pattern: str, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        params = encode({**query, "limit": _PAGE})
        found: list[dict[str, Any]] = []
        while True:
            page = self._request("GET", pattern, pattern, params=params)
            data = page.get("data") or []
            found.extend(data)
            if not page.get("has_more") or not data:
                return found
            params = [*encode({**query, "limit": _PAGE}), ("starting_after", found[-1]["id"])]

    def _request(
        self,
        method: str,
        path: str,
        pattern: str,
        *,
        params: list[tuple[str, str]] | None = None,
        form: list[tuple[str, str]] | None = None,
        key: str | None = None,
    ) -> Any:
        endpoint = f"{method} {pattern}"
        if self._before_request is not None:
            self._before_request(endpoint)
        headers = {"Idempotency-Key": key} if key else {}
        content = None
        if form is not None:
            content = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            response = self._http.request(
                method,
                path,
                params=urlencode(params) if params else None,
                content=content,
                headers=headers,
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"Stripe did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach Stripe: {type(exc).__name__}") from exc
        log.info(
            "stripe.call",
            endpoint=endpoint,
            path=path,
            status=response.status_code,
            replayed=response.headers.get("idempotent-replayed") == "true",
            request_id=response.headers.get("request-id"),
        )
        if response.status_code >= 400:
            raise _error(method, path, response)
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"Stripe answered {method} {path} with no JSON") from exc


def _error(method: str, path: str, response: httpx.Response) -> Exception:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    status = response.status_code
    code = error.get("code")
    detail = error.get("message") or response.reason_phrase
    message = f"Stripe {status} {code or error.get('type') or ''} on {method} {path}: {detail}"
    if status == 429:
        return RateLimited(message, retry_after=retry_after(response))
    if status >= 500 and (
        response.headers.get("stripe-should-retry") == "false"
        or response.headers.get("idempotent-replayed") == "true"
    ):
        message += " (Stripe keeps this answer for this idempotency key)"
        return KeptFailure(message, retry_after=retry_after(response))
    if status == 409 or try_again_later(status):
        return TransientError(message, retry_after=retry_after(response))
    if status in (401, 403):
        return AuthenticationFailed(message)
    return StripeRefused(message, status=status, code=code)
