"""QuickBooks Online's Accounting API v3, the part meterbridge uses: create, read and
update an invoice, and list a customer's newest invoices
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice).

Every call names ``minorversion=75``: Intuit retired the lower ones in 2025 and
python-quickbooks refuses them. Every write carries ``requestid`` (at most 50 characters,
unique per company): QuickBooks answers a repeat with the first answer and writes nothing
(https://blogs.intuit.com/2015/04/06/15346/). An update is sparse (only the fields sent
change; a ``Line`` array replaces every line) and names the invoice's current
``SyncToken``. Every call is to the credential's company, ``/v3/company/{realmId}``.

Answers become types the retry policy reads: 429 (``ThrottleExceeded``) is
``RemoteLimited``; 5xx, timeouts and a stale ``SyncToken`` (fault 5010: someone changed
the invoice meanwhile) ``TransientError``; 403 ``AuthenticationFailed`` (the token does not
open this company); any other fault ``PerformFailed`` with QuickBooks' own messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from domain.destinations.quickbooks import QuickBooksCredential, QuickBooksEnvironment
from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from domain.settings import Settings
from workers.connections.http import AuthorizedClient
from workers.destinations.http import retry_after, try_again_later
from workers.destinations.turns import RemoteLimited

MINOR_VERSION = "75"
#: QuickBooks' own limit of a requestid's length.
MAX_REQUEST_ID = 50
STALE_OBJECT = "5010"
OBJECT_NOT_FOUND = "610"


def api_base(settings: Settings, credential: QuickBooksCredential) -> str:
    """Production and sandbox companies live on different hosts, reached with different
    keys: the credential's ``environment`` says which."""
    if credential.environment == QuickBooksEnvironment.SANDBOX:
        return settings.quickbooks_sandbox_api_base
    return settings.quickbooks_api_base


@dataclass(frozen=True)
class QuickBooksInvoice:
    id: str
    sync_token: str
    customer_id: str
    total: Decimal
    balance: Decimal
    line_ids: list[str]
    private_note: str

    @property
    def paid(self) -> Decimal:
        """What customers paid toward it (payments applied lower ``Balance``)."""
        return self.total - self.balance

    @property
    def voided(self) -> bool:
        """Voiding keeps the invoice, zeroes its amounts and puts "Voided" in front of
        PrivateNote (https://blogs.intuit.com/2016/04/06/voiding-invoice-objects)."""
        return self.total == 0 and self.private_note.startswith("Voided")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuickBooksInvoice:
        customer = data.get("CustomerRef")
        return cls(
            id=str(data["Id"]),
            sync_token=str(data.get("SyncToken", "")),
            customer_id=str(customer.get("value", "")) if isinstance(customer, dict) else "",
            total=Decimal(str(data.get("TotalAmt") or 0)),
            balance=Decimal(str(data.get("Balance") or 0)),
            line_ids=[
                str(line["Id"])
                for line in data.get("Line") or []
                if isinstance(line, dict)
                and line.get("Id")
                and line.get("DetailType") != "SubTotalLineDetail"
            ],
            private_note=str(data.get("PrivateNote") or ""),
        )


class QuickBooksFault(PerformFailed):
    """A ``Fault`` answer; ``codes`` are its errors' codes (``610``, ``6070`` …)."""

    def __init__(self, message: str, codes: tuple[str, ...]) -> None:
        super().__init__(message)
        self.codes = codes


class StaleSyncToken(TransientError):
    """Fault 5010: the invoice changed since it was read (a person, a payment): read it
    again and retry."""


class QuickBooksClient:
    def __init__(self, http: AuthorizedClient, realm_id: str) -> None:
        self._http = http
        self._company = f"/v3/company/{realm_id}"

    def create_invoice(self, invoice: Mapping[str, Any], request_id: str) -> QuickBooksInvoice:
        return self._write(dict(invoice), request_id)

    def update_invoice(
        self, invoice_id: str, sync_token: str, fields: Mapping[str, Any], request_id: str
    ) -> QuickBooksInvoice:
        """A sparse update: only ``fields`` change (a ``Line`` array replaces all lines)."""
        body = {**fields, "Id": invoice_id, "SyncToken": sync_token, "sparse": True}
        return self._write(body, request_id)

    def invoice(self, invoice_id: str) -> QuickBooksInvoice | None:
        """None: there is no such invoice (deleted in QuickBooks)."""
        response = self._http.request(
            "GET", f"{self._company}/invoice/{invoice_id}", params={"minorversion": MINOR_VERSION}
        )
        try:
            body = _checked(response)
        except QuickBooksFault as fault:
            if OBJECT_NOT_FOUND in fault.codes:
                return None
            raise
        return QuickBooksInvoice.from_json(_invoice_of(body))

    def newest_invoices_of(self, customer_id: str, count: int = 100) -> list[QuickBooksInvoice]:
        """The customer's invoices, newest first (deleted ones are not found)."""
        # QuickBooks' query language, not SQL: the one value is quoted as it requires
        statement = (
            f"select * from Invoice where CustomerRef = '{_quoted(customer_id)}' "  # noqa: S608
            f"orderby MetaData.CreateTime desc maxresults {count}"
        )
        response = self._http.request(
            "GET",
            f"{self._company}/query",
            params={"query": statement, "minorversion": MINOR_VERSION},
        )
        body = _checked(response)
        found = (body.get("QueryResponse") or {}).get("Invoice") if isinstance(body, dict) else None
        return [
            QuickBooksInvoice.from_json(i)
            for i in found or []
            if isinstance(i, dict) and i.get("Id")
        ]

    def _write(self, body: dict[str, Any], request_id: str) -> QuickBooksInvoice:
        if not 0 < len(request_id) <= MAX_REQUEST_ID:
            raise ValueError(f"a requestid is 1 to {MAX_REQUEST_ID} characters: {request_id!r}")
        response = self._http.request(
            "POST",
            f"{self._company}/invoice",
            params={"minorversion": MINOR_VERSION, "requestid": request_id},
            json=body,
        )
        return QuickBooksInvoice.from_json(_invoice_of(_checked(response)))


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _invoice_of(body: Any) -> Mapping[str, Any]:
    invoice = body.get("Invoice") if isinstance(body, dict) else None
    if not isinstance(invoice, dict) or not invoice.get("Id"):
        raise TransientError("QuickBooks answered without the invoice")
    return invoice


def _checked(response: httpx.Response) -> Any:
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    body = _json(response)
    if status == 429:
        raise RemoteLimited(retry_after(response), "ThrottleExceeded")
    if try_again_later(status):
        raise TransientError(
            f"QuickBooks answered {status} on {where}: {fault_messages(body)}",
            retry_after=retry_after(response),
        )
    if status == 403:
        raise AuthenticationFailed(
            f"QuickBooks refused access to the company on {where} (403): {fault_messages(body)}"
        )
    if status >= 400:
        codes = tuple(str(error.get("code", "")) for error in _errors(body))
        if STALE_OBJECT in codes:
            raise StaleSyncToken(f"QuickBooks refused {where}: {fault_messages(body)}")
        raise QuickBooksFault(f"QuickBooks refused {where}: {fault_messages(body)}", codes)
    return body


def fault_messages(body: Any) -> str:
    """A ``Fault``'s errors, joined: QuickBooks' message and detail, its code and the
    element it names."""
    texts = []
    for error in _errors(body):
        message = str(error.get("Message") or error.get("message") or "")
        detail = str(error.get("Detail") or error.get("detail") or "")
        text = detail if detail.startswith(message) else f"{message}: {detail}".strip(": ")
        where = ", ".join(str(error[k]) for k in ("code", "element") if error.get(k))
        texts.append(f"{text} ({where})" if where else text)
    return "; ".join(texts)[:1000] or "no details"


def _errors(body: Any) -> list[dict[str, Any]]:
    """The errors of a ``Fault`` (``{"Fault": {"Error": […]}}``), or of the lower-case
    envelope QuickBooks answers authentication failures with."""
    if not isinstance(body, dict):
        return []
    fault = body.get("Fault") or body.get("fault")
    errors = (fault.get("Error") or fault.get("error")) if isinstance(fault, dict) else None
    return [error for error in errors or [] if isinstance(error, dict)]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
