"""A small Chargebee API v2 client over httpx: form-encoded requests, basic auth with the
API key, an idempotency key on every write, and errors turned into meterbridge's types:

- 429 and 5xx, timeouts, connection failures → ``TransientError`` (with ``Retry-After``);
- 401 and 403 → ``AuthenticationFailed``;
- any other 4xx → ``PerformFailed`` carrying Chargebee's ``api_error_code`` and message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from domain.errors import TransientError
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from workers.destinations.http import retry_after, try_again_later

log = structlog.get_logger(__name__)

IDEMPOTENCY_HEADER = "chargebee-idempotency-key"


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    status: str
    customer_id: str
    line_items: list[dict[str, Any]]

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> Invoice:
        invoice = data["invoice"]
        return cls(
            id=invoice["id"],
            status=invoice.get("status", ""),
            customer_id=invoice.get("customer_id", ""),
            line_items=list(invoice.get("line_items") or []),
        )

    @property
    def line_ids(self) -> set[str]:
        return {line["id"] for line in self.line_items}


class ChargebeeClient:
    def __init__(
        self,
        *,
        site: str,
        api_key: str,
        url_template: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url_template.format(site=site),
            auth=(api_key, ""),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Accept": "application/json", "User-Agent": "meterbridge"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChargebeeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def pending_invoice(self, customer_id: str) -> Invoice | None:
        data = self._request(
            "GET",
            "/invoices",
            params={
                "customer_id[is]": customer_id,
                "status[is]": "pending",
                "limit": "1",
                "sort_by[desc]": "date",
            },
        )
        entries = data.get("list") or []
        return Invoice.from_response(entries[0]) if entries else None

    def invoice(self, invoice_id: str) -> Invoice:
        return Invoice.from_response(self._request("GET", f"/invoices/{invoice_id}"))

    def add_charge_item(self, invoice_id: str, form: dict[str, str], key: str) -> Invoice:
        data = self._request("POST", f"/invoices/{invoice_id}/add_charge_item", form=form, key=key)
        return Invoice.from_response(data)

    def delete_line_items(self, invoice_id: str, line_ids: list[str], key: str) -> Invoice:
        form = {f"line_items[id][{index}]": line_id for index, line_id in enumerate(line_ids)}
        data = self._request(
            "POST", f"/invoices/{invoice_id}/delete_line_items", form=form, key=key
        )
        return Invoice.from_response(data)

    def create_invoice(
        self, customer_id: str, currency: str, form: dict[str, str], key: str
    ) -> Invoice:
        body = {"customer_id": customer_id, "currency_code": currency, **form}
        data = self._request(
            "POST", "/invoices/create_for_charge_items_and_charges", form=body, key=key
        )
        return Invoice.from_response(data)

    def void_invoice(self, invoice_id: str, key: str) -> Invoice:
        return Invoice.from_response(
            self._request("POST", f"/invoices/{invoice_id}/void", form={}, key=key)
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        headers = {IDEMPOTENCY_HEADER: key} if key else {}
        try:
            response = self._http.request(method, path, params=params, data=form, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Chargebee did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach Chargebee: {type(exc).__name__}") from exc
        log.info(
            "chargebee.call",
            method=method,
            path=path,
            status=response.status_code,
            replayed=response.headers.get("chargebee-idempotency-replayed") == "true",
        )
        if response.status_code < 400:
            return response.json()
        raise _error(method, path, response)


def _error(method: str, path: str, response: httpx.Response) -> Exception:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("api_error_code") or body.get("error_code") or "unknown"
    status = response.status_code
    detail = body.get("message", "")
    message = f"Chargebee {status} {code} on {method} {path}: {detail}".strip()
    if status == 429 or try_again_later(status):
        return TransientError(message, retry_after=retry_after(response))
    if status in (401, 403):
        return AuthenticationFailed(message)
    return PerformFailed(message)
