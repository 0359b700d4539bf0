"""A fake Xero: a real HTTP server the tests start, serving Xero's identity endpoints (through
:class:`~tests.support.fake_oauth.FakeAuthorizationServer`), ``/connections`` and the part of
the Accounting API meterbridge uses (sales invoices), with Xero's JSON shapes and error
format, bearer tokens and tenants, ``Idempotency-Key`` replays, ``unitdp``, the per-tenant
rate limits, and fault injection.

    fake = FakeXero().start()                       # fake.base_url, fake.api_url, fake.token_url
    tokens = fake.tokens()                          # a consented token set (offline_access)
    customer = fake.contact("Acme")                 # a ContactID in fake.tenant_id
    fake.item("USAGE", unit_price="0.0125")         # an item code; account "200" exists
    other = fake.add_tenant("Second Org")           # a second connected organisation
    fake.fail_next(2, "500")                        # the next two API calls answer 500
    fake.fail_next(1, "429", retry_after=3)         # ... 429 (minute) with Retry-After: 3
    fake.fail_next(1, "hang")                       # ... hang past the client's timeout
    fake.fail_next(1, "apply_then_hang")            # ... do the work, then hang (answer lost)
    fake.fail_next(1, "500_saved")                  # ... 500, kept under the idempotency key
    fake.fail_next(1, "401")                        # ... 401 TokenExpired (token dropped early)
    fake.pay(invoice_id, "10.00")                   # a payment on an AUTHORISED invoice
    fake.invoices(); fake.invoice(invoice_id)       # what it holds (4 dp, with lines)
    fake.max_concurrent()                           # most calls in flight for the tenant
    fake.writes(); fake.calls                       # applied writes; every request, timed

Sources, checked November 2026: the OpenAPI document XeroAPI/Xero-OpenAPI
``xero_accounting.yaml`` (spec 19.x, commit e952d0b) and ``xero-identity.yaml``; the official
SDK ``xero-python`` 15.2.0; Xero staff answers on GitHub and the developer community; the
reference ``/work/shared/reference/destinations.md`` §3. UNCONFIRMED marks what no primary
source showed; ``fake:`` in an error message marks the fake's own wording.

What it reproduces, because meterbridge depends on it:

- Identity. ``GET /identity/connect/authorize`` and ``POST /identity/connect/token`` (Xero's
  are ``login.xero.com/identity/connect/authorize`` and ``identity.xero.com/connect/token``,
  ``xero-identity.yaml`` securitySchemes). Access tokens live 30 minutes; refresh tokens
  rotate with a 30-minute grace for the previous one and are issued only when the scope has
  ``offline_access``; ``invalid_grant`` is exactly ``{"error":"invalid_grant"}`` (see
  :mod:`tests.support.fake_oauth` for the sources). Client credentials give a Custom
  Connection token for :attr:`tenant_id`; calls with it may leave out ``xero-tenant-id``
  (reference §3, https://developer.xero.com/faq/custom-integration).
- ``GET /connections`` (the spec spells it ``/Connections``; both are served) lists the
  connected tenants ``{id, authEventId, tenantId, tenantType: "ORGANISATION", tenantName,
  createdDateUtc, updatedDateUtc}`` (``xero-identity.yaml`` example); ``DELETE
  /connections/{id}`` disconnects one (204). They need a bearer token but no tenant, and
  count against no tenant's limits (Xero staff, XeroAPI/xero-ruby#128).
- Auth errors, in Xero's problem shape ``{"Type":null,"Title","Status","Detail","Instance",
  "Extensions":{}}``: an expired token is 401 ``TokenExpired: token expired at MM/DD/YYYY
  HH:MM:SS`` (waynerobinson/xeroizer#509); a missing or unknown token 401
  ``AuthenticationUnsuccessful`` (wording UNCONFIRMED for 401); a token without an
  invoices scope 401 ``AuthorizationUnsuccessful`` (XeroAPI/Xero-NetStandard#298); a missing,
  unknown or disconnected ``xero-tenant-id`` 403 ``AuthenticationUnsuccessful``
  (NangoHQ/nango#203, XeroAPI/xero-node#432). Invoice calls need ``accounting.transactions``
  or ``accounting.invoices`` (reads also take the ``.read`` scopes; OpenAPI ``security``).
- ``Accept: application/json`` is required: Xero answers XML otherwise (UNCONFIRMED from a
  primary source; every SDK and pyxero send it). The fake answers 406 instead of XML
  (``require_json=False`` turns the check off).
- Accounting API under ``/api.xro/2.0``: ``PUT /Invoices`` (createInvoices), ``POST
  /Invoices`` (updateOrCreateInvoices: an ``InvoiceID`` or an existing ACCREC
  ``InvoiceNumber`` updates, otherwise creates), ``GET /Invoices/{InvoiceID}``, ``POST
  /Invoices/{InvoiceID}`` (updateInvoice), ``GET /Invoices`` with ``IDs``,
  ``InvoiceNumbers``, ``ContactIDs``, ``Statuses``, ``searchTerm`` (InvoiceNumber and
  Reference, case-insensitive), ``where`` (``&&``/``AND`` of ``==``/``!=`` on Reference,
  InvoiceNumber, Status, Type, InvoiceID, Contact.ContactID; strings in double quotes,
  ``Guid("…")`` for ids), ``page``/``pageSize`` (≤ 1000, default 100) and ``unitdp`` (all
  OpenAPI parameters). To find an invoice again after a lost answer, use ``where=
  Reference=="…"`` (Reference is not unique) or ``InvoiceNumbers=…`` (unique for ACCREC).
  A multi-invoice GET gives ``LineItems`` only with ``page`` (Xero docs via reference
  notes; the OpenAPI example of GET /Invoices shows ``LineItems: []``).
  Bodies are ``{"Invoices": [...]}``; answers ``{"Id", "Status": "OK", "ProviderName",
  "DateTimeUTC", "Invoices": [...]}`` (+ ``pagination`` when paged). Dates are written as
  ``YYYY-MM-DD`` or ``/Date(ms)/`` (the SDK's form) and answered as ``/Date(ms+0000)/`` with
  ``DateString``; ``Date`` defaults to today (UTC).
- Validation errors: 400 ``{"ErrorNumber":10,"Type":"ValidationException","Message":"A
  validation exception occurred","Elements":[<the invoice as it would be, with
  "HasErrors": true and "ValidationErrors":[{"Message"}]>]}`` (OpenAPI ``Error`` /
  ``Element`` schemas; a real one in XeroAPI/xero-node#407); the SDK raises
  ``AccountingBadRequestException`` whose ``reason`` is the first message. With
  ``summarizeErrors=false`` the answer is 200 and each element carries
  ``StatusAttributeString`` OK/ERROR; valid ones are written. With the default, nothing in
  the batch is written when one element fails (UNCONFIRMED).
- Idempotency: ``Idempotency-Key`` (≤ 128 characters, OpenAPI ``idempotencyKey``) on PUT and
  POST. A repeat with the same key and request answers the first answer and writes
  nothing; the same key with another request (method, path, query or body) answers 400;
  keys last ``idempotency_seconds`` (6 minutes per the Xero idempotency guide as quoted in
  public notes: UNCONFIRMED here). Answers the endpoint produced are kept, 4xx included
  ("errors are cached too", same source); auth, limit and injected ``500`` refusals are
  not, ``500_saved`` is. Keys are kept per tenant (Xero says per app: UNCONFIRMED detail).
- Invoices: ``Type`` ACCREC only (fake); ``Contact.ContactID`` must be a :meth:`contact`;
  ``Status`` DRAFT, SUBMITTED or AUTHORISED on create (default DRAFT); ``DueDate`` required
  for AUTHORISED ("The document DueDate field must be specified.", observed by several
  integrations; SUBMITTED UNCONFIRMED, so not required); ``InvoiceNumber`` generated
  ``INV-0001``… when missing and unique per tenant for ACCREC ("Invoice # must be unique.",
  OpenAPI example); ``ItemCode`` must be an :meth:`item` (its description, price and account
  fill what the line leaves out) and ``AccountCode`` an :meth:`account` ("Account code 'X'
  is not a valid code for this document.", XeroAPI/Xero-NetStandard#364; account ``200``
  exists in every tenant). ``LineAmount`` may stand in for ``UnitAmount``.
- Decimals: ``UnitAmount`` is kept to 2 dp, or 4 dp when the request has ``unitdp=4``
  (OpenAPI ``unitdp``; ``Purchase.UnitPrice``), on PUT and POST as on GET, and answered to
  the request's dp. ``Quantity`` keeps 4 dp (UNCONFIRMED). ``LineAmount`` = Quantity *
  UnitAmount * (100 - DiscountRate)/100 rounded to 2 dp (OpenAPI ``LineItem.LineAmount``),
  at most 9,999,999,999.99; SubTotal = Total = the sum (the fake has no tax rates: TotalTax
  0); rounding half-up (UNCONFIRMED). An update of a DRAFT/SUBMITTED invoice without
  ``unitdp=4`` re-keeps its lines at 2 dp even when it sends no ``LineItems`` (Xero
  UserVoice 50252319: "Every request needs to send the unitdp").
- Updates: ``LineItems`` replace all lines; a line keeps its ``LineItemID`` only when sent
  with it (reference §3; xero-mcp-server update-invoice). Status moves DRAFT → DRAFT,
  SUBMITTED, AUTHORISED, DELETED; SUBMITTED → the same; AUTHORISED → AUTHORISED, VOIDED.
  The lines of an AUTHORISED invoice cannot change (fake wording; the SDK-era advice is
  to void and recreate). VOIDED is refused once a payment is applied ("This document cannot
  be edited as it has a payment or credit note allocated to it.", waynerobinson/xeroizer#211);
  a fully paid invoice is PAID and takes no edits. DELETED and VOIDED invoices take none.
- Rate limits per tenant (https://developer.xero.com/faq/limits): ``concurrent_calls`` (5)
  in progress, ``calls_per_minute`` (60) in a sliding ``minute_seconds``, ``calls_per_day``
  (5,000) in a sliding ``day_seconds``; over one → 429 with ``X-Rate-Limit-Problem`` and
  ``Retry-After`` (whole seconds). The values are ``minute`` and ``day`` as Xero sends them
  (XeroAPI/xero-node#634, XeroAPI/xero-python#74; NOT ``daily``); ``concurrent`` is the
  fake's guess (UNCONFIRMED). Every answer carries ``X-MinLimit-Remaining``,
  ``X-DayLimit-Remaining`` and ``X-AppMinLimit-Remaining`` (FAQ). Refused calls count
  against nothing. :meth:`max_concurrent` is the most calls that were in flight at once
  for a tenant, refused ones included, so a test can assert a client never sent a 6th.
  ``latency`` makes every API call take that long, so concurrency shows.
- Faults (``fail_next``) hit Accounting API calls only, after the auth and limit checks, and
  hold a concurrency slot while they hang. ``500`` answers Xero's ``UnknownErrorException``
  (``ErrorNumber`` 500, XeroAPI/xero-node#285).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_oauth import Bearer, FakeAuthorizationServer, Grant
from tests.support.processes import free_port, serve_in_thread, stop_server

CLIENT_ID = "FAKEXEROCLIENTID00000000000000000"
CLIENT_SECRET = "fake-xero-client-secret"
SCOPES = "openid profile email offline_access accounting.transactions accounting.contacts"
API = "/api.xro/2.0"
AUTHORIZE_PATH = "/identity/connect/authorize"
TOKEN_PATH = "/identity/connect/token"
FAULT_KINDS = ("500", "500_saved", "429", "hang", "apply_then_hang", "401")
PROBLEM_MINUTE, PROBLEM_DAY, PROBLEM_CONCURRENT = "minute", "day", "concurrent"
IDEMPOTENCY_KEY_MAX = 128
LINE_AMOUNT_MAX = Decimal("9999999999.99")
APP_CALLS_PER_MINUTE = 10_000
PAGE_SIZE, PAGE_SIZE_MAX = 100, 1000
WRITE_SCOPES = frozenset({"accounting.transactions", "accounting.invoices"})
READ_SCOPES = WRITE_SCOPES | {"accounting.transactions.read", "accounting.invoices.read"}
CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
MOVES = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "AUTHORISED", "DRAFT", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
}
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
NOT_FOUND = "The resource you're looking for cannot be found"
PAID_MESSAGE = "This document cannot be edited as it has a payment or credit note allocated to it."
UNKNOWN_ERROR = (
    "An error occurred in Xero. Check the API Status page http://status.developer.xero.com "
    "for current service status."
)
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T[\d:.]+)?$")
_WHERE = re.compile(
    r"^\s*(Reference|InvoiceNumber|Status|Type|InvoiceID|Contact\.ContactID)\s*(==|!=)\s*"
    r'(?:"([^"]*)"|Guid\("([^"]*)"\))\s*$'
)
_WHERE_FIELDS = {
    "Reference": "Reference",
    "InvoiceNumber": "InvoiceNumber",
    "Status": "Status",
    "Type": "Type",
    "InvoiceID": "InvoiceID",
    "Contact.ContactID": "ContactID",
}

Answer = tuple[int, dict[str, Any]]


@dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    retry_after: int | None = None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    tenant_id: str | None
    idempotency_key: str | None
    at: float  # time.monotonic() when the request arrived
    status: int = 0
    finished_at: float = 0.0  # time.monotonic() when the answer was ready
    replayed: bool = False  # answered from the idempotency store
    fault: str | None = None
    wrote: bool = False  # changed something


@dataclass
class _Stored:
    fingerprint: tuple[str, str, str, str]
    status: int
    body: dict[str, Any]
    expires_at: float


@dataclass
class Tenant:
    tenant_id: str
    name: str
    currency: str
    connection_id: str
    created: datetime
    connected: bool = True
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    minute: deque[float] = field(default_factory=deque)
    day: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 0
    saved: dict[str, _Stored] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


@dataclass
class FakeXero:
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    tenant_name: str = "Demo Company (US)"
    currency: str = "USD"
    calls_per_minute: int = 60
    calls_per_day: int = 5000
    concurrent_calls: int = 5
    minute_seconds: float = 60.0
    day_seconds: float = 86400.0
    idempotency_seconds: float = 360.0
    access_token_seconds: float = 1800.0
    refresh_grace_seconds: float = 1800.0
    refresh_token_seconds: float = 60 * 86400.0
    hang_seconds: float = 5.0
    latency: float = 0.0
    require_json: bool = True
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._tenants: dict[str, Tenant] = {}
        self._app_minute: deque[float] = deque()
        self.auth = FakeAuthorizationServer(
            access_token_seconds=self.access_token_seconds,
            refresh_grace_seconds=self.refresh_grace_seconds,
            refresh_token_seconds=self.refresh_token_seconds,
            refresh_requires_scope="offline_access",
            describe_errors=False,
            hang_seconds=self.hang_seconds,
        )
        self.auth.register_client(self.client_id, self.client_secret, scope=SCOPES)
        self.tenant_id = self.add_tenant(self.tenant_name, currency=self.currency)
        self.port = free_port()
        self._server: uvicorn.Server | None = None

    # --- the tests' side -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``AccountingApi(api_client, base_url=...)`` takes."""
        return self.base_url + API

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH

    @property
    def connections_url(self) -> str:
        return self.base_url + "/connections"

    def start(self) -> FakeXero:
        routes = [
            *self.auth.routes(authorize_path=AUTHORIZE_PATH, token_path=TOKEN_PATH),
            Route("/connections", self._connections, methods=["GET"]),
            Route("/Connections", self._connections, methods=["GET"]),
            Route("/connections/{id}", self._disconnect, methods=["DELETE"]),
            Route("/Connections/{id}", self._disconnect, methods=["DELETE"]),
            Route(f"{API}/Invoices", self._api(self._list_invoices, write=False), methods=["GET"]),
            Route(f"{API}/Invoices", self._api(self._put_invoices, write=True), methods=["PUT"]),
            Route(f"{API}/Invoices", self._api(self._post_invoices, write=True), methods=["POST"]),
            Route(
                f"{API}/Invoices/{{InvoiceID}}",
                self._api(self._get_invoice, write=False),
                methods=["GET"],
            ),
            Route(
                f"{API}/Invoices/{{InvoiceID}}",
                self._api(self._update_invoice, write=True),
                methods=["POST"],
            ),
        ]
        self._server = serve_in_thread(Starlette(routes=routes), self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def tokens(self, scope: str = SCOPES) -> dict[str, Any]:
        """A token set as a completed consent would give it (no browser round trip)."""
        return self.auth.issue(self.client_id, scope=scope)

    def add_tenant(self, name: str, *, currency: str = "USD") -> str:
        """Another organisation, connected, with account ``200`` (Sales)."""
        with self._lock:
            tenant = Tenant(
                tenant_id=str(uuid.uuid4()),
                name=name,
                currency=currency,
                connection_id=str(uuid.uuid4()),
                created=_now(),
            )
            self._tenants[tenant.tenant_id] = tenant
            tenant.accounts["200"] = {"Code": "200", "Name": "Sales", "Type": "REVENUE"}
            return tenant.tenant_id

    def disconnect(self, tenant_id: str | None = None) -> None:
        """The user disconnects the organisation: its calls answer 403."""
        with self._lock:
            self._tenant(tenant_id).connected = False

    def contact(self, name: str, tenant_id: str | None = None) -> str:
        with self._lock:
            contact_id = str(uuid.uuid4())
            self._tenant(tenant_id).contacts[contact_id] = {
                "ContactID": contact_id,
                "Name": name,
                "ContactStatus": "ACTIVE",
            }
            return contact_id

    def account(self, code: str, name: str = "Sales", tenant_id: str | None = None) -> str:
        with self._lock:
            self._tenant(tenant_id).accounts[code] = {"Code": code, "Name": name}
            return code

    def item(
        self,
        code: str,
        *,
        description: str | None = None,
        unit_price: str | Decimal | None = None,
        account_code: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        with self._lock:
            self._tenant(tenant_id).items[code] = {
                "Code": code,
                "Description": description or code,
                "UnitPrice": None if unit_price is None else Decimal(unit_price),
                "AccountCode": account_code,
            }
            return code

    def pay(self, invoice_id: str, amount: str | Decimal) -> str:
        """A payment on an AUTHORISED invoice; it becomes PAID once nothing is due."""
        with self._lock:
            _tenant, invoice = self._find(invoice_id)
            if invoice["Status"] != "AUTHORISED":
                raise ValueError(f"only AUTHORISED invoices take payments ({invoice['Status']})")
            paid = Decimal(amount)
            due = _total(invoice) - _paid(invoice)
            if not Decimal(0) < paid <= due:
                raise ValueError(f"payment {paid} must be more than 0 and at most {due}")
            payment_id = str(uuid.uuid4())
            invoice["Payments"].append({"PaymentID": payment_id, "Date": _today(), "Amount": paid})
            if paid == due:
                invoice["Status"] = "PAID"
                invoice["FullyPaidOn"] = _today()
            invoice["Updated"] = _now()
            return payment_id

    def fail_next(self, count: int, kind: str, *, retry_after: int | None = None) -> None:
        """The next ``count`` Accounting API calls fail this way:

        ``500``: nothing done, nothing kept under the idempotency key. ``500_saved``: the
        500 is kept under the key (a retry with it gets the 500 again). ``429``:
        ``X-Rate-Limit-Problem: minute`` with ``Retry-After`` (``retry_after`` or 1).
        ``hang``: no answer for ``hang_seconds`` (then 504), nothing done.
        ``apply_then_hang``: done and kept under the key, then no answer for
        ``hang_seconds``. ``401``: TokenExpired, as when Xero ends a token early.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.extend(Fault(kind, retry_after) for _ in range(count))

    def invoices(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's invoices as GET would answer them with ``unitdp=4``."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            return [self._render(tenant, i, 4) for i in tenant.invoices.values()]

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            tenant, invoice = self._find(invoice_id)
            return self._render(tenant, invoice, 4)

    def max_concurrent(self, tenant_id: str | None = None) -> int:
        with self._lock:
            return self._tenant(tenant_id).max_in_flight

    def writes(self, tenant_id: str | None = None) -> list[Call]:
        """Calls that changed something (replays and refusals excluded)."""
        with self._lock:
            wanted = tenant_id or self.tenant_id
            return [c for c in self.calls if c.wrote and c.tenant_id == wanted]

    def reset_limits(self, tenant_id: str | None = None) -> None:
        """Forget the calls counted against the tenant's minute and day limits."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            tenant.minute.clear()
            tenant.day.clear()

    # --- identity-side endpoints -------------------------------------------------------

    async def _connections(self, request: Request) -> Response:
        call = self._record(request, None, None)
        bearer = self.auth.inspect_bearer(request)
        if bearer.grant is None:
            return self._finish(call, *_unauthorised(bearer))
        with self._lock:
            connections = [
                {
                    "id": t.connection_id,
                    "authEventId": _auth_event(bearer.grant),
                    "tenantId": t.tenant_id,
                    "tenantType": "ORGANISATION",
                    "tenantName": t.name,
                    "createdDateUtc": _iso(t.created),
                    "updatedDateUtc": _iso(t.created),
                }
                for t in self._tenants.values()
                if t.connected
            ]
        call.status, call.finished_at = 200, time.monotonic()
        return JSONResponse(connections)

    async def _disconnect(self, request: Request) -> Response:
        call = self._record(request, None, None)
        bearer = self.auth.inspect_bearer(request)
        if bearer.grant is None:
            return self._finish(call, *_unauthorised(bearer))
        with self._lock:
            found = [
                t for t in self._tenants.values() if t.connection_id == request.path_params["id"]
            ]
            if not found or not found[0].connected:
                call.status, call.finished_at = 404, time.monotonic()
                return Response(status_code=404)
            found[0].connected = False
            call.wrote = True
        call.status, call.finished_at = 204, time.monotonic()
        return Response(status_code=204)

    # --- the Accounting API: checks, limits, faults, idempotency ------------------------

    def _api(
        self,
        operation: Callable[[Tenant, dict[str, str], dict[str, str], Any], Answer],
        *,
        write: bool,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return await self._call(request, operation, write=write)

        return serve

    async def _call(
        self,
        request: Request,
        operation: Callable[[Tenant, dict[str, str], dict[str, str], Any], Answer],
        *,
        write: bool,
    ) -> Response:
        raw = await request.body()
        key = request.headers.get("idempotency-key") if write else None
        call = self._record(request, raw, key)
        try:
            tenant = self._admit(request, call, write=write)
        except _Refused as refused:
            return self._finish(call, refused.status, refused.body, refused.headers)
        try:
            return await self._serve(request, call, tenant, operation, raw, key)
        finally:
            with self._lock:
                tenant.in_flight -= 1

    def _admit(self, request: Request, call: Call, *, write: bool) -> Tenant:
        """Auth, tenant and rate limits; counts the call in flight when it returns."""
        if self.require_json and "application/json" not in request.headers.get("accept", ""):
            raise _Refused(
                406,
                {"Detail": "fake: send Accept: application/json (Xero answers XML otherwise)"},
                {},
            )
        bearer = self.auth.inspect_bearer(request)
        if bearer.grant is None:
            raise _Refused(*_unauthorised(bearer))
        grant = bearer.grant
        if not grant.scopes & (WRITE_SCOPES if write else READ_SCOPES):
            raise _Refused(401, _problem("Unauthorized", 401, "AuthorizationUnsuccessful"), {})
        tenant_id = request.headers.get("xero-tenant-id")
        if not tenant_id and grant.kind == "client_credentials":
            tenant_id = self.tenant_id  # a Custom Connection is for one organisation
        with self._lock:
            tenant = self._tenants.get(tenant_id or "")
            if tenant is None or not tenant.connected:
                raise _Refused(403, _problem("Forbidden", 403, "AuthenticationUnsuccessful"), {})
            call.tenant_id = tenant.tenant_id
            tenant.in_flight += 1
            tenant.max_in_flight = max(tenant.max_in_flight, tenant.in_flight)
            limited = self._limited(tenant)
            if limited is not None:
                tenant.in_flight -= 1
                problem, wait = limited
                headers = {"X-Rate-Limit-Problem": problem, "Retry-After": str(wait)}
                headers.update(self._remaining(tenant))
                raise _Refused(429, _problem("Too Many Requests", 429, problem), headers)
            return tenant

    def _limited(self, tenant: Tenant) -> tuple[str, int] | None:
        """(problem, seconds to wait) when over a limit; else the call is counted."""
        now = time.monotonic()
        _slide(tenant.minute, now, self.minute_seconds)
        _slide(tenant.day, now, self.day_seconds)
        _slide(self._app_minute, now, self.minute_seconds)
        if tenant.in_flight > self.concurrent_calls:
            return PROBLEM_CONCURRENT, 1
        if len(tenant.minute) >= self.calls_per_minute:
            return PROBLEM_MINUTE, _wait(tenant.minute[0] + self.minute_seconds - now)
        if len(tenant.day) >= self.calls_per_day:
            return PROBLEM_DAY, _wait(tenant.day[0] + self.day_seconds - now)
        tenant.minute.append(now)
        tenant.day.append(now)
        self._app_minute.append(now)
        return None

    def _remaining(self, tenant: Tenant) -> dict[str, str]:
        return {
            "X-MinLimit-Remaining": str(max(0, self.calls_per_minute - len(tenant.minute))),
            "X-DayLimit-Remaining": str(max(0, self.calls_per_day - len(tenant.day))),
            "X-AppMinLimit-Remaining": str(max(0, APP_CALLS_PER_MINUTE - len(self._app_minute))),
        }

    async def _serve(
        self,
        request: Request,
        call: Call,
        tenant: Tenant,
        operation: Callable[[Tenant, dict[str, str], dict[str, str], Any], Answer],
        raw: bytes,
        key: str | None,
    ) -> Response:
        limits = self._remaining(tenant)
        if self.latency:
            await asyncio.sleep(self.latency)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        kind = fault.kind if fault else None
        call.fault = kind
        if kind == "500":
            return self._finish(call, 500, _unknown_error(), limits)
        if kind == "429":
            retry = str((fault.retry_after if fault else None) or 1)
            headers = {**limits, "X-Rate-Limit-Problem": PROBLEM_MINUTE, "Retry-After": retry}
            return self._finish(call, 429, _problem("Too Many Requests", 429, "minute"), headers)
        if kind == "401":
            detail = f"TokenExpired: token expired at {_expiry_stamp(0)}"
            return self._finish(call, 401, _problem("Unauthorized", 401, detail), {})
        if kind == "hang":
            await asyncio.sleep(self.hang_seconds)
            return self._finish(call, 504, {"Detail": "fake: gateway timeout"}, limits)
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            message = f"fake: Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX} characters"
            return self._finish(
                call, 400, _validation([{"ValidationErrors": _messages([message])}]), limits
            )
        try:
            parsed = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            parsed = _UNPARSEABLE
        query = dict(request.query_params)
        path = {name: str(value) for name, value in request.path_params.items()}
        fingerprint = (
            request.method,
            request.url.path,
            json.dumps(sorted(query.items())),
            json.dumps(parsed, sort_keys=True, default=str)
            if parsed is not _UNPARSEABLE
            else raw.hex(),
        )
        with self._lock:
            now = time.monotonic()
            saved = tenant.saved.get(key) if key else None
            if saved is not None and saved.expires_at <= now:
                del tenant.saved[key or ""]
                saved = None
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    message = f"fake: Idempotency Key {key} is used with a different request"
                    body = _validation([{"ValidationErrors": _messages([message])}])
                    return self._finish(call, 400, body, limits)
                call.replayed = True
                return self._finish(call, saved.status, saved.body, limits)
            if kind == "500_saved":
                status, body = 500, _unknown_error()
            elif parsed is _UNPARSEABLE:
                status, body = (
                    400,
                    _validation([{"ValidationErrors": _messages(["fake: the body is not JSON"])}]),
                )
            else:
                before = _snapshot(tenant)
                status, body = operation(tenant, path, query, parsed)
                call.wrote = _snapshot(tenant) != before
            if key:
                tenant.saved[key] = _Stored(
                    fingerprint, status, body, now + self.idempotency_seconds
                )
            call.status = status  # done now, even if the answer is then lost
        if kind == "apply_then_hang":
            await asyncio.sleep(self.hang_seconds)
        return self._finish(call, status, body, self._remaining(tenant))

    def _record(self, request: Request, raw: bytes | None, key: str | None) -> Call:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        call = Call(
            request.method,
            request.url.path,
            dict(request.query_params),
            body,
            None,
            key,
            time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        return call

    def _finish(
        self, call: Call, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> Response:
        call.status, call.finished_at = status, time.monotonic()
        return JSONResponse(body, status_code=status, headers=headers or {})

    # --- operations (run under the lock) ------------------------------------------------

    def _get_invoice(
        self, tenant: Tenant, path: dict[str, str], query: dict[str, str], _body: Any
    ) -> Answer:
        invoice = tenant.invoices.get(path["InvoiceID"].lower())
        if invoice is None:
            return 404, _problem("Not Found", 404, NOT_FOUND)
        return 200, _envelope([self._render(tenant, invoice, _unitdp(query))])

    def _list_invoices(
        self, tenant: Tenant, _path: dict[str, str], query: dict[str, str], _body: Any
    ) -> Answer:
        try:
            found = self._filtered(tenant, query)
            page = int(query["page"]) if "page" in query else None
            size = min(max(int(query.get("pageSize", PAGE_SIZE)), 1), PAGE_SIZE_MAX)
        except ValueError as exc:
            return 400, _validation([{"ValidationErrors": _messages([f"fake: {exc}"])}])
        found.sort(key=lambda i: (i["Updated"], i["InvoiceID"]))
        dp = _unitdp(query)
        summary = query.get("summaryOnly", "").lower() == "true"
        if page is None and not summary:
            rendered = [self._render(tenant, i, dp, lines=False) for i in found]
            return 200, _envelope(rendered)
        page = max(page or 1, 1)
        chunk = found[(page - 1) * size : page * size]
        rendered = [self._render(tenant, i, dp, lines=not summary) for i in chunk]
        body = _envelope(rendered)
        body["pagination"] = {
            "page": page,
            "pageSize": size,
            "pageCount": max(1, math.ceil(len(found) / size)),
            "itemCount": len(found),
        }
        return 200, body

    def _put_invoices(
        self, tenant: Tenant, _path: dict[str, str], query: dict[str, str], body: Any
    ) -> Answer:
        return self._write(tenant, query, body, method="PUT", invoice_id=None)

    def _post_invoices(
        self, tenant: Tenant, _path: dict[str, str], query: dict[str, str], body: Any
    ) -> Answer:
        return self._write(tenant, query, body, method="POST", invoice_id=None)

    def _update_invoice(
        self, tenant: Tenant, path: dict[str, str], query: dict[str, str], body: Any
    ) -> Answer:
        invoice_id = path["InvoiceID"].lower()
        if invoice_id not in tenant.invoices:
            return 404, _problem("Not Found", 404, NOT_FOUND)
        return self._write(tenant, query, body, method="POST", invoice_id=invoice_id)

    def _write(
        self,
        tenant: Tenant,
        query: dict[str, str],
        body: Any,
        *,
        method: str,
        invoice_id: str | None,
    ) -> Answer:
        specs = body.get("Invoices") if isinstance(body, dict) else None
        if isinstance(body, dict) and specs is None and ("Type" in body or "InvoiceID" in body):
            specs = [body]
        if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
            message = 'fake: the body must be {"Invoices": [ {...}, ... ]}'
            return 400, _validation([{"ValidationErrors": _messages([message])}])
        if invoice_id is not None and len(specs) != 1:
            message = "fake: POST /Invoices/{InvoiceID} takes exactly one invoice"
            return 400, _validation([{"ValidationErrors": _messages([message])}])
        dp = _unitdp(query)
        summarize = query.get("summarizeErrors", "true").lower() != "false"
        outcomes: list[tuple[dict[str, Any], list[str]]] = []
        taken: set[str] = set()  # invoice numbers this batch has already used
        for spec in specs:
            target = self._target(tenant, spec, method=method, invoice_id=invoice_id)
            errors: list[str] = []
            if isinstance(target, str):
                errors.append(target)
                base = None
            else:
                base = target
            candidate = self._apply(tenant, base, spec, dp, errors, taken)
            outcomes.append((candidate, errors))
        failed = [(c, e) for c, e in outcomes if e]
        if failed and summarize:
            elements = [
                {**self._render(tenant, c, dp), "HasErrors": True, "ValidationErrors": _messages(e)}
                for c, e in failed
            ]
            return 400, _validation(elements)
        rendered = []
        for candidate, errors in outcomes:
            if not errors:
                tenant.invoices[candidate["InvoiceID"]] = candidate
                element = self._render(tenant, candidate, dp)
                element["StatusAttributeString"] = "OK"
            else:
                element = self._render(tenant, candidate, dp)
                element.update(
                    HasErrors=True,
                    StatusAttributeString="ERROR",
                    ValidationErrors=_messages(errors),
                )
            rendered.append(element)
        return 200, _envelope(rendered)

    def _target(
        self, tenant: Tenant, spec: dict[str, Any], *, method: str, invoice_id: str | None
    ) -> dict[str, Any] | str | None:
        """The invoice a spec updates, None to create, or an error message."""
        if invoice_id is not None:
            return tenant.invoices[invoice_id]
        given = str(spec.get("InvoiceID") or "").lower()
        if given:
            found = tenant.invoices.get(given)
            if found is None:
                return f"fake: no invoice has InvoiceID {given}"
            if method == "PUT":
                return "fake: PUT /Invoices creates; update with POST"
            return found
        number = spec.get("InvoiceNumber")
        if method == "POST" and number:
            for invoice in tenant.invoices.values():
                if invoice["Type"] == "ACCREC" and invoice["InvoiceNumber"] == number:
                    return invoice
        return None

    def _apply(
        self,
        tenant: Tenant,
        base: dict[str, Any] | None,
        spec: dict[str, Any],
        dp: int,
        errors: list[str],
        taken: set[str],
    ) -> dict[str, Any]:
        """The invoice ``spec`` makes of ``base`` (a new one when None); problems go to
        ``errors`` in Xero's words where known."""
        invoice = copy.deepcopy(base) if base is not None else _blank()
        was = invoice["Status"] if base is not None else None
        if base is None:
            if spec.get("Type") != "ACCREC":
                errors.append("Invoice not of valid type for creation")
            invoice["Type"] = "ACCREC"
        elif "Type" in spec and spec["Type"] != invoice["Type"]:
            errors.append("fake: an invoice's Type cannot change")
        if was in ("PAID",):
            errors.append(PAID_MESSAGE)
        elif was in ("DELETED", "VOIDED"):
            errors.append(f"fake: a {was} invoice cannot be edited")
        self._apply_contact(tenant, invoice, spec, errors, creating=base is None)
        for name in ("Date", "DueDate"):
            if spec.get(name) is not None:
                parsed = _parse_date(spec[name])
                if parsed is None:
                    errors.append(f"fake: {name} must be YYYY-MM-DD or /Date(ms)/")
                else:
                    invoice[name] = parsed
        for name in ("Reference", "Url"):
            if name in spec:
                invoice[name] = "" if spec[name] is None else str(spec[name])
        if "SentToContact" in spec:
            invoice["SentToContact"] = bool(spec["SentToContact"])
        if "CurrencyCode" in spec:
            invoice["CurrencyCode"] = str(spec["CurrencyCode"])
        if invoice["CurrencyCode"] is None:
            invoice["CurrencyCode"] = tenant.currency
        if "LineAmountTypes" in spec:
            if spec["LineAmountTypes"] not in LINE_AMOUNT_TYPES:
                errors.append(
                    f"fake: LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}"
                )
            else:
                invoice["LineAmountTypes"] = spec["LineAmountTypes"]
        self._apply_number(tenant, invoice, spec, errors, taken)
        status = spec.get("Status", invoice["Status"] if base is not None else "DRAFT")
        if base is None and status not in CREATE_STATUSES:
            errors.append(
                f"fake: an invoice is created DRAFT, SUBMITTED or AUTHORISED, not {status}"
            )
        elif was in MOVES and status not in MOVES[was]:
            errors.append(f"fake: a {was} invoice cannot become {status}")
        if status == "VOIDED" and invoice["Payments"]:
            errors.append(PAID_MESSAGE)
        if "LineItems" in spec:
            lines = self._lines(tenant, invoice, spec["LineItems"], dp, errors)
            if was == "AUTHORISED" and _shape(lines, dp) != _shape(invoice["Lines"], dp):
                errors.append(
                    "fake: the lines of an AUTHORISED invoice cannot change; void it and "
                    "create another"
                )
            elif was != "AUTHORISED":
                invoice["Lines"] = lines
        elif was in ("DRAFT", "SUBMITTED") and dp == 2:
            for line in invoice["Lines"]:  # Xero re-creates the lines at the request's dp
                line["UnitAmount"] = _round(line["UnitAmount"], 2)
        if status == "AUTHORISED" and invoice["DueDate"] is None:
            errors.append("The document DueDate field must be specified.")
        invoice["Status"] = status
        invoice["Updated"] = _now()
        return invoice

    def _apply_contact(
        self,
        tenant: Tenant,
        invoice: dict[str, Any],
        spec: dict[str, Any],
        errors: list[str],
        *,
        creating: bool,
    ) -> None:
        contact = spec.get("Contact")
        if contact is None:
            if creating:
                errors.append("fake: a Contact with a ContactID must be given")
            return
        contact_id = (
            str(contact.get("ContactID") or "").lower() if isinstance(contact, dict) else ""
        )
        if not contact_id:
            errors.append("fake: give the Contact by ContactID (the fake creates no contacts)")
        elif contact_id not in tenant.contacts:
            errors.append(f"fake: the ContactID {contact_id} is not a contact of this organisation")
        else:
            invoice["ContactID"] = contact_id

    def _apply_number(
        self,
        tenant: Tenant,
        invoice: dict[str, Any],
        spec: dict[str, Any],
        errors: list[str],
        taken: set[str],
    ) -> None:
        number = spec.get("InvoiceNumber")
        if number:
            number = str(number)
            if len(number) > 255:
                errors.append("fake: InvoiceNumber is longer than 255 characters")
            clash = any(
                i["InvoiceNumber"] == number and i["InvoiceID"] != invoice["InvoiceID"]
                for i in tenant.invoices.values()
            )
            if clash or (number in taken and number != invoice["InvoiceNumber"]):
                errors.append("Invoice # must be unique.")
            invoice["InvoiceNumber"] = number
        elif not invoice["InvoiceNumber"]:
            used = {i["InvoiceNumber"] for i in tenant.invoices.values()} | taken
            number = f"INV-{next(tenant.numbers):04d}"
            while number in used:
                number = f"INV-{next(tenant.numbers):04d}"
            invoice["InvoiceNumber"] = number
        taken.add(invoice["InvoiceNumber"])

    def _lines(
        self,
        tenant: Tenant,
        invoice: dict[str, Any],
        specs: Any,
        dp: int,
        errors: list[str],
    ) -> list[dict[str, Any]]:
        if not isinstance(specs, list):
            errors.append("fake: LineItems must be a list")
            return []
        existing = {line["LineItemID"]: line for line in invoice["Lines"]}
        lines = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, dict):
                errors.append(f"fake: LineItems[{index}] must be an object")
                continue
            given_id = str(spec.get("LineItemID") or "").lower()
            line: dict[str, Any] = {
                "LineItemID": given_id if given_id in existing else str(uuid.uuid4()),
                "Description": spec.get("Description"),
                "ItemCode": spec.get("ItemCode"),
                "AccountCode": spec.get("AccountCode"),
                "TaxType": spec.get("TaxType") or "NONE",
                "Tracking": spec.get("Tracking") or [],
                "DiscountRate": None,
            }
            unit, quantity, amount = (
                spec.get("UnitAmount"),
                spec.get("Quantity"),
                spec.get("LineAmount"),
            )
            item = None
            if line["ItemCode"]:
                item = tenant.items.get(str(line["ItemCode"]))
                if item is None:
                    errors.append(f"fake: Item code '{line['ItemCode']}' is not valid")
                else:
                    line["Description"] = line["Description"] or item["Description"]
                    line["AccountCode"] = line["AccountCode"] or item["AccountCode"]
                    if unit is None and amount is None:
                        unit = item["UnitPrice"]
            if not line["Description"]:
                errors.append("fake: Description needs to be at least 1 char long")
            if line["AccountCode"] and str(line["AccountCode"]) not in tenant.accounts:
                errors.append(
                    f"Account code '{line['AccountCode']}' is not a valid code for this document."
                )
            try:
                numbers = [_decimal(v) for v in (quantity, unit, amount, spec.get("DiscountRate"))]
            except (InvalidOperation, TypeError, ValueError):
                errors.append(f"fake: LineItems[{index}] has a number that is not a number")
                continue
            q, u, a, discount = numbers
            if q is None:
                q = Decimal(1) if (u is not None or a is not None) else Decimal(0)
            if u is None:
                u = a / q if a is not None and q else Decimal(0)
            line["Quantity"] = _round(q, 4)
            line["UnitAmount"] = _round(u, dp)
            line["DiscountRate"] = discount
            if abs(_line_amount(line)) > LINE_AMOUNT_MAX:
                errors.append("fake: LineAmount is more than 9,999,999,999.99")
            lines.append(line)
        return lines

    def _filtered(self, tenant: Tenant, query: dict[str, str]) -> list[dict[str, Any]]:
        def listed(name: str) -> set[str] | None:
            value = query.get(name)
            return {v.strip().strip('"') for v in value.split(",") if v.strip()} if value else None

        ids = {v.lower() for v in listed("IDs") or set()} or None
        numbers, statuses = listed("InvoiceNumbers"), listed("Statuses")
        contacts = {v.lower() for v in listed("ContactIDs") or set()} or None
        clauses = _where(query.get("where", ""))
        term = query.get("searchTerm", query.get("SearchTerm", "")).lower()
        found = []
        for invoice in tenant.invoices.values():
            if ids is not None and invoice["InvoiceID"] not in ids:
                continue
            if numbers is not None and invoice["InvoiceNumber"] not in numbers:
                continue
            if statuses is not None and invoice["Status"] not in statuses:
                continue
            if contacts is not None and invoice["ContactID"] not in contacts:
                continue
            if term and term not in (invoice["InvoiceNumber"] + " " + invoice["Reference"]).lower():
                continue
            if all(_holds(invoice, clause) for clause in clauses):
                found.append(invoice)
        return found

    # --- rendering ---------------------------------------------------------------------

    def _render(
        self, tenant: Tenant, invoice: dict[str, Any], dp: int, *, lines: bool = True
    ) -> dict[str, Any]:
        total = _total(invoice)
        paid = _paid(invoice)
        contact = tenant.contacts.get(invoice["ContactID"] or "", {})
        rendered: dict[str, Any] = {
            "Type": invoice["Type"],
            "InvoiceID": invoice["InvoiceID"],
            "InvoiceNumber": invoice["InvoiceNumber"],
            "Reference": invoice["Reference"],
            "Payments": [
                {
                    "PaymentID": p["PaymentID"],
                    "Date": _ms_date(p["Date"]),
                    "Amount": float(p["Amount"]),
                    "CurrencyRate": 1.0,
                    "HasAccount": False,
                    "HasValidationErrors": False,
                }
                for p in invoice["Payments"]
            ],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "AmountDue": float(total - paid),
            "AmountPaid": float(paid),
            "AmountCredited": 0.0,
            "SentToContact": invoice["SentToContact"],
            "CurrencyRate": 1.0,
            "IsDiscounted": any(line["DiscountRate"] for line in invoice["Lines"]),
            "HasAttachments": False,
            "HasErrors": False,
            "Contact": {
                "ContactID": invoice["ContactID"],
                "Name": contact.get("Name"),
                "ContactStatus": contact.get("ContactStatus", "ACTIVE"),
                "Addresses": [],
                "Phones": [],
                "ContactGroups": [],
                "ContactPersons": [],
                "HasValidationErrors": False,
            },
            "DateString": _date_string(invoice["Date"]),
            "Date": _ms_date(invoice["Date"]),
            "Status": invoice["Status"],
            "LineAmountTypes": invoice["LineAmountTypes"],
            "LineItems": [_render_line(line, dp) for line in invoice["Lines"]] if lines else [],
            "SubTotal": float(total),
            "TotalTax": 0.0,
            "Total": float(total),
            "UpdatedDateUTC": _ms_datetime(invoice["Updated"]),
            "UpdatedDateUTCString": invoice["Updated"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "CurrencyCode": invoice["CurrencyCode"],
        }
        if invoice["DueDate"] is not None:
            rendered["DueDateString"] = _date_string(invoice["DueDate"])
            rendered["DueDate"] = _ms_date(invoice["DueDate"])
        if invoice["Url"]:
            rendered["Url"] = invoice["Url"]
        if invoice.get("FullyPaidOn") is not None:
            rendered["FullyPaidOnDate"] = _ms_date(invoice["FullyPaidOn"])
        return rendered

    # --- lookups -------------------------------------------------------------------------

    def _tenant(self, tenant_id: str | None) -> Tenant:
        return self._tenants[tenant_id or self.tenant_id]

    def _find(self, invoice_id: str) -> tuple[Tenant, dict[str, Any]]:
        for tenant in self._tenants.values():
            invoice = tenant.invoices.get(invoice_id.lower())
            if invoice is not None:
                return tenant, invoice
        raise KeyError(invoice_id)


_UNPARSEABLE: Any = object()


def _blank() -> dict[str, Any]:
    return {
        "InvoiceID": str(uuid.uuid4()),
        "Type": "ACCREC",
        "InvoiceNumber": "",
        "Reference": "",
        "ContactID": None,
        "Date": _today(),
        "DueDate": None,
        "Status": "DRAFT",
        "LineAmountTypes": "Exclusive",
        "CurrencyCode": None,
        "Url": "",
        "SentToContact": False,
        "Lines": [],
        "Payments": [],
        "FullyPaidOn": None,
        "Updated": _now(),
    }


def _snapshot(tenant: Tenant) -> str:
    return json.dumps(tenant.invoices, sort_keys=True, default=str)


def _line_amount(line: dict[str, Any]) -> Decimal:
    amount = line["Quantity"] * line["UnitAmount"]
    if line["DiscountRate"]:
        amount = amount * (Decimal(100) - line["DiscountRate"]) / Decimal(100)
    return _round(amount, 2)


def _total(invoice: dict[str, Any]) -> Decimal:
    return sum((_line_amount(line) for line in invoice["Lines"]), Decimal(0))


def _paid(invoice: dict[str, Any]) -> Decimal:
    return sum((p["Amount"] for p in invoice["Payments"]), Decimal(0))


def _shape(lines: list[dict[str, Any]], dp: int) -> list[tuple[Any, ...]]:
    return [
        (
            line["Description"],
            line["Quantity"],
            _round(line["UnitAmount"], dp),
            line["ItemCode"],
            line["AccountCode"],
            line["DiscountRate"],
        )
        for line in lines
    ]


def _render_line(line: dict[str, Any], dp: int) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "LineItemID": line["LineItemID"],
        "Description": line["Description"],
        "Quantity": float(line["Quantity"]),
        "UnitAmount": float(_round(line["UnitAmount"], dp)),
        "TaxType": line["TaxType"],
        "TaxAmount": 0.0,
        "LineAmount": float(_line_amount(line)),
        "Tracking": line["Tracking"],
        "ValidationErrors": [],
    }
    if line["AccountCode"]:
        rendered["AccountCode"] = line["AccountCode"]
    if line["ItemCode"]:
        rendered["ItemCode"] = line["ItemCode"]
    if line["DiscountRate"]:
        rendered["DiscountRate"] = float(line["DiscountRate"])
    return rendered


def _envelope(invoices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": "meterbridge fake",
        "DateTimeUTC": f"/Date({int(_now().timestamp() * 1000)})/",
        "Invoices": invoices,
    }


def _validation(elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": elements,
    }


def _messages(messages: list[str]) -> list[dict[str, str]]:
    return [{"Message": message} for message in messages]


def _unknown_error() -> dict[str, Any]:
    return {"ErrorNumber": 500, "Type": "UnknownErrorException", "Message": UNKNOWN_ERROR}


def _problem(title: str, status: int, detail: str) -> dict[str, Any]:
    return {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }


def _unauthorised(bearer: Bearer) -> tuple[int, dict[str, Any], dict[str, str]]:
    if bearer.state == "expired":
        detail = f"TokenExpired: token expired at {_expiry_stamp(bearer.expired_ago)}"
    else:
        detail = "AuthenticationUnsuccessful"
    return 401, _problem("Unauthorized", 401, detail), {}


def _auth_event(grant: Grant) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-fake-auth-event:{grant.grant_id}"))


def _where(expression: str) -> list[tuple[str, str, str]]:
    if not expression.strip():
        return []
    clauses = []
    for part in re.split(r"\s*&&\s*|\s+AND\s+", expression, flags=re.IGNORECASE):
        matched = _WHERE.match(part)
        if matched is None:
            raise ValueError(f"where: the fake does not understand {part!r}")
        name, op, text, guid = matched.groups()
        value = (guid.lower() if guid is not None else text) or ""
        if name in ("InvoiceID", "Contact.ContactID"):
            value = value.lower()
        clauses.append((_WHERE_FIELDS[name], op, value))
    return clauses


def _holds(invoice: dict[str, Any], clause: tuple[str, str, str]) -> bool:
    name, op, value = clause
    equal = str(invoice[name] or "") == value
    return equal if op == "==" else not equal


def _unitdp(query: dict[str, str]) -> int:
    return 4 if query.get("unitdp") == "4" else 2


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError("not finite")
    return number


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _parse_date(value: Any) -> date | None:
    text = str(value).strip()
    matched = _MS_DATE.match(text)
    if matched:
        return datetime.fromtimestamp(int(matched.group(1)) / 1000, UTC).date()
    matched = _ISO_DATE.match(text)
    if matched:
        try:
            return date.fromisoformat(matched.group(1))
        except ValueError:
            return None
    return None


def _ms_date(day: date) -> str:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _ms_datetime(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _date_string(day: date) -> str:
    return f"{day.isoformat()}T00:00:00"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0")


def _expiry_stamp(seconds_ago: float) -> str:
    return (_now() - timedelta(seconds=seconds_ago)).strftime("%m/%d/%Y %H:%M:%S")


def _slide(window: deque[float], now: float, span: float) -> None:
    while window and now - window[0] >= span:
        window.popleft()


def _wait(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _now() -> datetime:
    return datetime.now(UTC)


def _today() -> date:
    return _now().date()


__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FAULT_KINDS",
    "PROBLEM_CONCURRENT",
    "PROBLEM_DAY",
    "PROBLEM_MINUTE",
    "SCOPES",
    "Call",
    "FakeXero",
]
