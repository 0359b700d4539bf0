"""NetSuite's REST web services, the part meterbridge uses: the ``invoice`` record, written by
upsert (ns-help section_156335203191) and read by external id.

``PUT /services/rest/record/v1/invoice/eid:{externalId}?replace=item`` creates the invoice
or updates the one with that external id; ``replace=item`` makes the given lines the
invoice's only lines (without it, an update appends them: ns-help section_1545297048). It
answers 204 with ``Location`` naming the invoice by internal id.

Answers become types the retry policy reads: 429 (over the account's concurrency limit,
``CONCURRENCY_LIMIT_EXCEEDED``) is ``RemoteLimited``, 5xx ``TransientError``, 403
``AuthenticationFailed`` (the role lacks a permission), any other refusal ``PerformFailed``
with NetSuite's own ``o:errorDetails`` (ns-help section_156570709583). A 401 is
``AuthorizedClient``'s: one fresh token or signature, then ``AUTH_FAILED``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from workers.connections.http import AuthorizedClient
from workers.destinations.http import retry_after, try_again_later
from workers.destinations.turns import RemoteLimited

RECORD = "/services/rest/record/v1"


@dataclass(frozen=True)
class NetSuiteInvoice:
    id: str
    external_id: str | None
    total: Decimal
    line_count: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetSuiteInvoice:
        sublist = data.get("item")
        items = sublist.get("items") if isinstance(sublist, dict) else None
        return cls(
            id=str(data["id"]),
            external_id=data.get("externalId"),
            total=Decimal(str(data.get("total") or 0)),
            line_count=len(items) if isinstance(items, list) else 0,
        )


class NetSuiteClient:
    def __init__(self, http: AuthorizedClient) -> None:
        self._http = http

    def upsert_invoice(self, external_id: str, invoice: Mapping[str, Any]) -> str:
        """Create or replace the invoice with this external id, lines and all; answers its
        internal id."""
        path = f"{RECORD}/invoice/eid:{external_id}"
        response = self._http.request("PUT", path, params={"replace": "item"}, json=dict(invoice))
        _checked(response)
        invoice_id = _id_in_location(response.headers.get("location"))
        if invoice_id is not None:
            return invoice_id
        found = self.invoice(external_id)  # the upsert page shows no answer: look it up
        if found is None:
            raise TransientError(f"NetSuite answered {path} but has no invoice {external_id}")
        return found.id

    def invoice(self, external_id: str) -> NetSuiteInvoice | None:
        response = self._http.request(
            "GET",
            f"{RECORD}/invoice/eid:{external_id}",
            params={"expandSubResources": "true"},
        )
        if response.status_code == 404:
            return None
        body = _checked(response)
        if not isinstance(body, dict) or "id" not in body:
            raise TransientError("NetSuite answered an invoice without its id")
        return NetSuiteInvoice.from_json(body)


def _id_in_location(location: str | None) -> str | None:
    """``…/record/v1/invoice/742`` → ``742``."""
    if not location:
        return None
    last = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    return last if last.isdigit() else None


def _checked(response: httpx.Response) -> Any:
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    body = _json(response)
    if 200 <= status < 300:
        return body
    if status == 429:
        raise RemoteLimited(retry_after(response), error_details(body, status))
    if try_again_later(status):
        raise TransientError(
            f"NetSuite answered {status} on {where}: {error_details(body, status)}",
            retry_after=retry_after(response),
        )
    if status == 403:
        raise AuthenticationFailed(f"NetSuite refused {where} (403): {error_details(body, status)}")
    raise PerformFailed(f"NetSuite refused {where}: {error_details(body, status)}")


def error_details(body: Any, status: int) -> str:
    """NetSuite's ``o:errorDetails``, joined: each ``o:errorCode: detail`` and where in the
    record (``o:errorPath``); else the answer's title, else its status."""
    messages: list[str] = []
    entries = body.get("o:errorDetails") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("detail"):
            continue
        text = str(entry["detail"])
        if entry.get("o:errorCode"):
            text = f"{entry['o:errorCode']}: {text}"
        if entry.get("o:errorPath"):
            text = f"{text} (at {entry['o:errorPath']})"
        messages.append(text)
    if messages:
        return "; ".join(messages)[:1500]
    if isinstance(body, dict) and body.get("title"):
        return str(body["title"])[:200]
    return f"HTTP {status}"


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
