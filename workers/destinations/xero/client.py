"""Xero's Accounting API, the part meterbridge uses: create, read and update an invoice
(https://developer.xero.com/documentation/api/accounting/invoices; XeroAPI/Xero-OpenAPI
``xero_accounting.yaml``).

Every write carries ``Idempotency-Key`` (Xero answers a repeat with the first answer)
and ``unitdp=4`` (without it Xero rounds unit amounts to 2 places, also on update); every
call carries the tenant (``xero-tenant-id``). Answers become types the retry policy
reads: 429 is ``RemoteLimited`` (``X-Rate-Limit-Problem``: minute, daily, concurrent;
``Retry-After``), 5xx and timeouts ``TransientError``, a ``ValidationException``
``PerformFailed`` with Xero's own messages, 403 ``AuthenticationFailed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from workers.connections.http import AuthorizedClient
from workers.destinations.http import retry_after, try_again_later
from workers.destinations.turns import RemoteLimited

API = "/api.xro/2.0"
#: Xero's own limit of an Idempotency-Key's length.
MAX_KEY = 128


@dataclass(frozen=True)
class XeroInvoice:
    id: str
    status: str
    line_ids: list[str]
    amount_paid: Decimal
    total: Decimal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> XeroInvoice:
        return cls(
            id=str(data["InvoiceID"]),
            status=str(data.get("Status", "")),
            line_ids=[
                str(line["LineItemID"])
                for line in data.get("LineItems", [])
                if line.get("LineItemID")
            ],
            amount_paid=Decimal(str(data.get("AmountPaid") or 0)),
            total=Decimal(str(data.get("Total") or 0)),
        )


class XeroClient:
    def __init__(self, http: AuthorizedClient) -> None:
        self._http = http

    def create_invoice(self, invoice: Mapping[str, Any], key: str) -> XeroInvoice:
        return self._write("PUT", f"{API}/Invoices", invoice, key)

    def update_invoice(self, invoice_id: str, fields: Mapping[str, Any], key: str) -> XeroInvoice:
        return self._write("POST", f"{API}/Invoices/{invoice_id}", fields, key)

    def invoice(self, invoice_id: str) -> XeroInvoice | None:
        response = self._http.request("GET", f"{API}/Invoices/{invoice_id}", params={"unitdp": "4"})
        if response.status_code == 404:
            return None
        return XeroInvoice.from_json(_first_invoice(_checked(response)))

    def live_invoices_with_reference(self, reference: str) -> list[XeroInvoice]:
        """ACCREC invoices with this ``Reference`` that are not voided or deleted
        (``page`` makes Xero include their lines)."""
        params = {
            "where": f'Type=="ACCREC" AND Reference=="{_quoted(reference)}"',
            "Statuses": "DRAFT,SUBMITTED,AUTHORISED,PAID",
            "page": "1",
            "unitdp": "4",
        }
        body = _checked(self._http.request("GET", f"{API}/Invoices", params=params))
        found = body.get("Invoices") if isinstance(body, dict) else None
        return [XeroInvoice.from_json(i) for i in found or [] if isinstance(i, dict)]

    def _write(self, method: str, path: str, invoice: Mapping[str, Any], key: str) -> XeroInvoice:
        response = self._http.request(
            method,
            path,
            params={"unitdp": "4"},
            json={"Invoices": [dict(invoice)]},
            headers={"Idempotency-Key": key[:MAX_KEY]},
        )
        return XeroInvoice.from_json(_first_invoice(_checked(response)))


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _first_invoice(body: Any) -> Mapping[str, Any]:
    invoices = body.get("Invoices") if isinstance(body, dict) else None
    if not invoices or not isinstance(invoices[0], dict) or "InvoiceID" not in invoices[0]:
        raise TransientError("Xero answered without the invoice")
    return invoices[0]


def _checked(response: httpx.Response) -> Any:
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status == 429:
        problem = response.headers.get("x-rate-limit-problem", "")
        raise RemoteLimited(retry_after(response), problem)
    if try_again_later(status):
        raise TransientError(
            f"Xero answered {status} on {where}", retry_after=retry_after(response)
        )
    body = _json(response)
    if status == 400:
        raise PerformFailed(f"Xero refused {where}: {validation_messages(body)}")
    if status == 403:
        raise AuthenticationFailed(f"Xero refused access to the tenant on {where} (403)")
    if status >= 400:
        raise PerformFailed(f"Xero answered {status} on {where}: {_detail(body)}")
    return body


def validation_messages(body: Any) -> str:
    """The ``ValidationErrors`` of a ``ValidationException``, joined; else its message."""
    messages: list[str] = []
    if isinstance(body, dict):
        for element in body.get("Elements") or []:
            for error in (element or {}).get("ValidationErrors") or []:
                if isinstance(error, dict) and error.get("Message"):
                    messages.append(str(error["Message"]))
    return "; ".join(messages) or _detail(body)


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("Detail") or body.get("Type") or "")[:500]
    return ""


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
