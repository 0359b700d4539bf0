"""A fake QuickBooks Online: a real HTTP server the tests start, serving the part of the
Accounting API v3 meterbridge uses (invoices, and the customers and items they reference),
Intuit's OAuth 2.0 endpoints and discovery document, with Intuit's error shapes, its
throttles, ``requestid`` replays, ``SyncToken`` locking and fault injection.

    fake = FakeQuickBooks().start()                   # fake.base_url; fake.api_url (…/v3)
    fake.realm_id                                     # the default company
    other = fake.company()                            # another company (realm)
    customer = fake.customer("Acme")                  # CustomerRef value (an Id)
    item = fake.item("Usage")                         # ItemRef value
    tokens = fake.tokens()                            # access/refresh tokens for realm_id
    fake.oauth                                        # the FakeAuthorizationServer mounted
    fake.fail_next(2, "500")                          # the next two API calls answer 500
    fake.fail_next(1, "429")                          # ... 429 ThrottleExceeded
    fake.fail_next(1, "401")                          # ... 401 as for an expired token
    fake.fail_next(1, "hang")                         # ... hang past the client's timeout
    fake.fail_next(1, "apply_then_hang")              # ... do the work, then hang
    fake.fail_next(1, "500", operation="create_invoice")   # only that operation's next call
    fake.pay(invoice_id, Decimal("10"))               # a customer payment applied to it
    fake.invoices(realm); fake.invoice(realm, id)     # what the company holds now
    fake.applied("create_invoice")                    # writes really done (replays excluded)
    fake.max_concurrent(realm)                        # most requests in flight at once
    fake.calls                                        # every API call, with monotonic times

Endpoints (``{realm}`` is the company's realm id):

- ``GET /.well-known/openid_configuration`` (also ``openid_sandbox_configuration``, with or
  without the trailing slash intuit-oauth uses): the discovery document, naming the fake's
  own endpoints. ``intuitlib.AuthClient(environment=<that URL>)`` fetches it in its
  constructor: ``utils.get_discovery_doc`` takes any value other than sandbox/production as
  the document's URL (intuit/oauth-pythonclient ``intuitlib/utils.py``).
- ``GET /connect/oauth2`` (consent) and ``POST /oauth2/v1/tokens/bearer`` (token), the paths
  of Intuit's ``appcenter.intuit.com/connect/oauth2`` and
  ``oauth.platform.intuit.com/oauth2/v1/tokens/bearer`` (intuit/oauth-jsclient
  ``src/OAuthClient.js``), served by :class:`FakeAuthorizationServer`
  (tests/support/fake_oauth.py). ``POST /v2/oauth2/tokens/revoke``: Intuit's revocation.
- ``POST /v3/company/{realm}/invoice``: create; with ``Id`` and ``SyncToken`` an update;
  ``?operation=void`` and ``?operation=delete``. ``GET /v3/company/{realm}/invoice/{id}``.
- ``GET /v3/company/{realm}/query?query=…`` and ``POST …/query`` with the statement as an
  ``application/text`` body (python-quickbooks posts it). ``GET …/customer/{id}``,
  ``GET …/item/{id}``.

What it reproduces, and where each fact comes from:

- OAuth. Access tokens last 3600 s (Intuit, Authorization FAQ,
  https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/faq;
  https://blogs.intuit.com/2024/06/03/oauth-token-management-done-the-right-way/). Refresh
  tokens rotate; "Your previous refresh tokens expire 24 hours after you receive a new one"
  (Intuit's own client, intuit/oauth-jsclient README, "Refresh access_token"): so
  ``refresh_grace_seconds`` is 86400. Refresh tokens live 100 days, rolling (same FAQ and
  blog); the token answer carries ``x_refresh_token_expires_in`` (Intuit's sample answer in
  the oauth-jsclient README shows 8726400). The fake rotates on every refresh; Intuit's
  staff say the value changes only every 24-26 hours, the same token coming back in
  between (intuit/oauth-jsclient issue #74; IntuitDeveloper/oauth2-nodejs issue #2), so a
  client must store whatever comes back either way. Since 2025 a refresh token also has a hard
  five-year life (https://blogs.a.intuit.com/2025/11/12/important-changes-to-refresh-token-policy);
  Intuit's clients ask for it with the request header
  ``x-include-refresh-token-hard-expires-in: true`` and read
  ``x_refresh_token_hard_expires_in`` (oauth-jsclient ``src/OAuthClient.js``
  ``_tokenRequestHeaders``, ``src/access-token/Token.js``, CHANGELOG 4.2.4): the fake adds
  the field only when that header is sent, and always with the full five years (it does not
  count down). Token answers are ``{"access_token", "expires_in", "refresh_token",
  "token_type": "bearer", "x_refresh_token_expires_in", …}``, no ``scope`` (the README's
  sample). The consent redirect carries ``code``, ``state`` and ``realmId`` (oauth-jsclient
  reads ``realmId`` from the redirect's parameters, ``src/OAuthClient.js``); the company is
  :attr:`consent_realm` (``realm_id`` unless a test sets it) and the tokens of that consent
  only open that company.
- Auth on the API: a missing, unknown or expired bearer token answers 401 with Intuit's
  lower-case envelope, ``{"warnings": null, "intuitObject": null, "fault": {"error":
  [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
  "detail": "Token expired: …", "code": "3200", "element": null}], "type":
  "AUTHENTICATION"}, …, "time": <epoch ms>}`` (a body captured from the API in a Go client,
  also quoted in a Salesforce Trailblazer thread). A token for another company answers 403
  ``ApplicationAuthorizationFailed; errorCode=003100`` in the same envelope (practitioners'
  captures; UNCONFIRMED from Intuit).
- Throttles, per company: 500 requests a minute and 10 concurrent requests, both answered
  429 (Intuit blog, https://blogs.intuit.com/2016/08/08/idg-concurrent-api-use-changes-coming-soon/).
  The 429 body is ``message=ThrottleExceeded; errorCode=003001; statusCode=429``, code 3001
  (widely captured by practitioners; the Detail wording is UNCONFIRMED). Knobs:
  ``requests_per_minute``, ``minute_seconds``, ``concurrent_limit``; ``latency_seconds``
  keeps each request in flight that long so concurrency shows; ``max_concurrent(realm)``
  is the most requests seen in flight at once, refused ones included. Intuit added a
  10-requests-a-second limit in the sandbox in 2025, "on par with our Production limits"
  (https://blogs.intuit.com/2025/08/13/upcoming-changes-to-the-accounting-api): off unless
  ``requests_per_second`` is set.
- ``minorversion``: Intuit ignores a value below 75 and answers as 75; no value also means 75
  (https://blogs.intuit.com/2025/01/21/changes-to-our-accounting-api-that-may-impact-your-application/).
  python-quickbooks instead warns below 75 (its ``MINIMUM_MINOR_VERSION``). The fake does what
  Intuit does and records the value sent (``Call.minorversion``);
  ``strict_minorversion=True`` makes it refuse a missing or lower one (fake's strictness).
- ``requestid`` (query parameter): "If the service receives another request with the same
  RequestID, instead of performing the operation again or returning an error, the service
  sends the same response as it did for the original request"; unique per company; at most
  50 characters (Intuit blog, https://blogs.intuit.com/2015/04/06/15346/). The fake keeps a
  2xx answer under its requestid (a write done then lost to ``apply_then_hang`` too) and
  replays it, whatever the new request says, writing nothing (``Call.replayed``). Not
  documented, so the fake's choices: answers that were not 2xx are not kept (a retry is
  done afresh); a requestid over 50 characters is refused; the keeping lasts forever
  unless ``requestid_seconds`` is set (Intuit's retention is UNCONFIRMED).
- The error envelope ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}],
  "type": "ValidationFault"}, "time": …}`` (Intuit, "Handling common errors",
  https://developer.intuit.com/app/developer/qbo/docs/develop/troubleshooting/handling-common-errors),
  HTTP 400. Codes:

  - 5010 ``Stale Object Error`` for an update, void or delete whose ``SyncToken`` is not the
    current one; Detail "Stale Object Error : You and root were working on this at the same
    time. root finished before you did, so your work was not saved." (Intuit's batch sample
    answer, reproduced in SDK fixtures).
  - 6070 ``Amount is not equal to UnitPrice * Qty`` with Detail "… Supplied value:1,000"
    (practitioners' captures; not in Intuit's error list). The rule: Amount must be
    Qty x UnitPrice rounded half up to cents (a practitioner's analysis of 1861.075 →
    1861.08). A line with Qty and UnitPrice both 0 is not checked: python-quickbooks sends
    those defaults and its integration test creates such an invoice (Amount 100) against the
    sandbox (ej2/python-quickbooks ``tests/integration/test_invoice.py``).
  - 2020 ``Required param missing, need to supply the required value for the API``
    (CustomerRef, Line.Amount, Line.DetailType, SyncToken of an update).
  - 2500 ``Invalid Reference Id`` for a CustomerRef, ItemRef or TaxCodeRef that does not
    exist (Detail "Invalid Reference Id : Names element id 7 not found": the pattern of
    captured details; the table names are a guess); 610 ``Object Not Found`` for an inactive
    one ("Something you're trying to use has been made inactive", Intuit's common-errors
    page) and for an invoice that does not exist or was deleted.
  - 2010 ``Request has invalid or unsupported property`` ("Property Name:failed to parse
    json object; a property specified is unsupported or invalid", captured) for a property
    the Invoice, Line or SalesItemLineDetail does not have, or a value of the wrong type.
  - 6140 ``Duplicate Document Number Error`` ("You must specify a different number. This
    number has already been used.") for a DocNumber another invoice of the company has,
    unless ``include=allowduplicatedocnum`` (Intuit's Invoice reference, as quoted; the
    code is 6140 in most captures, 6210 in Intuit's 2017 blog). DocNumber: 21 characters at
    most; absent, it stays absent, or is numbered by the fake when the company has
    ``custom_txn_numbers=False`` (Preferences:CustomTxnNumber).
  - 4000 ``Error parsing query`` for a statement the fake cannot parse or a property that
    is not queryable (``QueryParserError`` / ``QueryValidationError`` details, wording from
    memory: UNCONFIRMED).
  - 6000 ``A business validation error has occurred while processing your request`` for
    voiding an invoice with a payment applied (QuickBooks refuses it: practitioners'
    incident reports; the Detail wording is the fake's own), and for the fake's own
    strictness, which says so in the Detail.
- Invoices: lines of ``DetailType`` ``SalesItemLineDetail`` (ItemRef required, Qty and
  UnitPrice at most 7 decimals, Amount at most 2: Breadwinner's help on QuickBooks Online's
  decimals, third-party) and ``DescriptionOnly``; a ``SubTotalLineDetail`` line sent back
  is ignored, and every answer ends ``Line`` with one, as QuickBooks does (Intuit blog
  https://blogs.intuit.com/2016/04/06/voiding-invoice-objects). Numbers may come as JSON
  numbers or numeric strings (python-quickbooks' DecimalEncoder sends strings). TotalAmt
  is the sum of the lines (no tax); Balance is TotalAmt less payments. TxnDate defaults to
  today, DueDate to TxnDate (QuickBooks would use the terms: UNCONFIRMED). CurrencyRef
  defaults to the customer's currency; another currency is refused (fake's strictness: a
  multicurrency company must invoice in the customer's currency, and the home currency is
  the only one otherwise). An update with ``"sparse": true`` changes the fields sent; a
  full update rewrites the invoice from the body (omitted writable fields are cleared) —
  both replace all lines when ``Line`` is sent. Read-only fields sent back (TotalAmt,
  Balance, MetaData, domain, LinkedTxn, …) are ignored. Every write adds 1 to SyncToken.
- Void (Intuit blog, "Voiding Invoice Objects", 2016): the invoice stays; amounts and
  quantities are zeroed (line Qty and UnitPrice are dropped, Amount 0, TotalAmt and Balance
  0) and "Voided" is put in front of PrivateNote ("Voided - <note>": the separator is
  UNCONFIRMED). Refused while a payment is applied. Delete answers ``{"Invoice": {"status":
  "Deleted", "domain": "QBO", "Id": …}}``; a deleted invoice is gone from reads and queries.
- Query: ``select * | count(*) | fields from Invoice|Customer|Item [where c (and c)*]
  [orderby f [asc|desc], …] [startposition n] [maxresults n]``, with ``=, <, >, <=, >=,
  IN (…), LIKE '%…%'`` (Intuit's query language subset; no OR). Queryable: Invoice ``Id,
  DocNumber, TxnDate, DueDate, CustomerRef, TotalAmt, Balance, MetaData.CreateTime,
  MetaData.LastUpdatedTime``; Customer ``Id, DisplayName, CompanyName, Active, MetaData.*``;
  Item ``Id, Name, Type, Active, MetaData.*``. Customers and items are active ones unless
  ``Active`` is in the condition. Answers ``{"QueryResponse": {"Invoice": […],
  "startPosition": 1, "maxResults": n}}``, ``{"QueryResponse": {}}`` when nothing matches,
  ``{"QueryResponse": {"totalCount": n}}`` for count; 100 rows unless MAXRESULTS (at most
  1000; python-quickbooks README). Voided invoices are found, deleted ones are not.
  Finding an invoice again after a lost answer: resend the write with the same
  ``requestid`` (Intuit's own recipe, the 2015 blog), or ``select * from Invoice where
  DocNumber = '…'`` when the client set a DocNumber it can recompute.
- Every answer is JSON and carries an ``intuit_tid`` header. QuickBooks answers XML unless
  the request accepts JSON (UNCONFIRMED); the fake speaks only JSON and answers 406 to a
  request whose ``Accept`` does not name ``application/json`` (python-quickbooks sends it).

Times for the rate limits come from ``time.monotonic()`` so tests can shrink the minute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import functools
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_oauth import FakeAuthorizationServer
from tests.support.processes import free_port, serve_in_thread, stop_server

CLIENT_ID = "ABfakeQuickBooksClientIdForMeterbridgeTests0000000"
CLIENT_SECRET = "fakeQuickBooksClientSecretForMeterbridge"
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
MINIMUM_MINOR_VERSION = 75
REQUEST_ID_MAX = 50
DOC_NUMBER_MAX = 21
TEXT_MAX = 4000  # PrivateNote, line Description
MEMO_MAX = 1000  # CustomerMemo
MAX_RESULTS = 1000
DEFAULT_RESULTS = 100
ACCESS_TOKEN_SECONDS = 3600
REFRESH_GRACE_SECONDS = 24 * 3600
REFRESH_TOKEN_SECONDS = 100 * 86400
REFRESH_TOKEN_HARD_SECONDS = 5 * 365 * 86400
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
FAULT_KINDS = ("500", "429", "401", "hang", "apply_then_hang")
OPERATIONS = (
    "create_invoice",
    "update_invoice",
    "void_invoice",
    "delete_invoice",
    "read_invoice",
    "query",
    "read_customer",
    "read_item",
)
COMPANY_TZ = timezone(timedelta(hours=-7))  # the answers' "time" offset (Pacific, as Intuit's)
CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "CAD": "Canadian Dollar",
    "EUR": "Euro",
    "GBP": "British Pound Sterling",
    "AUD": "Australian Dollar",
}
CENT = Decimal("0.01")

_INVOICE_FIELDS = frozenset(
    {
        "Id", "SyncToken", "sparse", "domain", "MetaData", "CustomField", "DocNumber",
        "TxnDate", "DepartmentRef", "CurrencyRef", "ExchangeRate", "PrivateNote", "TxnStatus",
        "LinkedTxn", "Line", "TxnTaxDetail", "CustomerRef", "CustomerMemo", "BillAddr",
        "ShipAddr", "ShipFromAddr", "FreeFormAddress", "ClassRef", "SalesTermRef", "DueDate",
        "GlobalTaxCalculation", "ShipMethodRef", "ShipDate", "TrackingNum", "PrintStatus",
        "EmailStatus", "BillEmail", "BillEmailCc", "BillEmailBcc", "DeliveryInfo", "TotalAmt",
        "HomeTotalAmt", "ApplyTaxAfterDiscount", "AllowIPNPayment", "AllowOnlinePayment",
        "AllowOnlineCreditCardPayment", "AllowOnlineACHPayment", "Balance", "HomeBalance",
        "Deposit", "DepositToAccountRef", "InvoiceLink", "RecurDataRef", "TaxExemptionRef",
        "TransactionLocationType", "ProjectRef", "EInvoiceStatus",
    }
)  # fmt: skip
# Writable fields the fake keeps as given (a full update clears them when omitted).
_KEPT_AS_GIVEN = (
    "CustomField", "DepartmentRef", "ExchangeRate", "BillAddr", "ShipAddr", "ShipFromAddr",
    "FreeFormAddress", "ClassRef", "SalesTermRef", "GlobalTaxCalculation", "ShipMethodRef",
    "ShipDate", "TrackingNum", "PrintStatus", "EmailStatus", "BillEmail", "BillEmailCc",
    "BillEmailBcc", "DeliveryInfo", "ApplyTaxAfterDiscount", "AllowIPNPayment",
    "AllowOnlinePayment", "AllowOnlineCreditCardPayment", "AllowOnlineACHPayment", "Deposit",
    "DepositToAccountRef", "TransactionLocationType", "ProjectRef", "TxnStatus",
)  # fmt: skip
_LINE_FIELDS = frozenset(
    {
        "Id", "LineNum", "Description", "Amount", "DetailType", "LinkedTxn", "CustomField",
        "SalesItemLineDetail", "SubTotalLineDetail", "SubtotalLineDetail",
        "DescriptionLineDetail", "DiscountLineDetail", "GroupLineDetail", "ProjectRef",
    }
)  # fmt: skip
_DETAIL_FIELDS = frozenset(
    {
        "ItemRef", "ItemAccountRef", "ClassRef", "TaxCodeRef", "PriceLevelRef", "MarkupInfo",
        "UnitPrice", "Qty", "ServiceDate", "TaxInclusiveAmt", "DiscountAmt", "DiscountRate",
        "TaxClassificationRef",
    }
)  # fmt: skip
_QUERYABLE = {
    "Invoice": {
        "Id", "DocNumber", "TxnDate", "DueDate", "CustomerRef", "TotalAmt", "Balance",
        "MetaData.CreateTime", "MetaData.LastUpdatedTime",
    },
    "Customer": {
        "Id", "DisplayName", "CompanyName", "Active", "MetaData.CreateTime",
        "MetaData.LastUpdatedTime",
    },
    "Item": {"Id", "Name", "Type", "Active", "MetaData.CreateTime", "MetaData.LastUpdatedTime"},
}  # fmt: skip
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")

Answer = tuple[int, dict[str, Any]]


@dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    operation: str | None = None  # None: the next call, whatever it is


@dataclass
class Call:
    method: str
    path: str
    realm: str
    operation: str  # one of OPERATIONS ("create_invoice", …), "" when not an API operation
    query: dict[str, str]
    body: Any  # parsed JSON (numbers as Decimal), or the text of a query
    request_id: str | None
    minorversion: str | None
    at: float  # time.monotonic() when the request arrived
    status: int = 0
    replayed: bool = False  # answered from the requestid store: nothing written
    applied: bool = False  # a write was done (even if its answer was then lost)
    fault: str | None = None  # the injected fault, if any


@dataclass
class _Saved:
    status: int
    body: dict[str, Any]
    at: float


@dataclass
class Company:
    realm_id: str
    name: str
    home_currency: str = "USD"
    multicurrency: bool = False
    custom_txn_numbers: bool = True  # Preferences:CustomTxnNumber
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tax_codes: dict[str, str] = field(default_factory=lambda: {"TAX": "TAX", "NON": "NON"})
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    payments: dict[str, list[tuple[str, Decimal]]] = field(default_factory=dict)
    saved: dict[str, _Saved] = field(default_factory=dict)  # requestid → answer
    requests: deque[float] = field(default_factory=deque)  # admitted in the last minute
    in_flight: int = 0
    peak_in_flight: int = 0


class _Fault(Exception):
    """An answer in Intuit's Fault envelope, raised from inside an operation."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        element: str = "",
        *,
        status: int = 400,
        kind: str = "ValidationFault",
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.status = status
        self.body: dict[str, Any] = {
            "Fault": {
                "Error": [{"Message": message, "Detail": detail, "code": code, "element": element}],
                "type": kind,
            },
            "time": _time(),
        }


class FakeQuickBooks:
    def __init__(
        self,
        *,
        requests_per_minute: int = 500,
        minute_seconds: float = 60.0,
        requests_per_second: int | None = None,
        concurrent_limit: int = 10,
        latency_seconds: float = 0.0,
        hang_seconds: float = 5.0,
        strict_minorversion: bool = False,
        requestid_seconds: float | None = None,
        access_token_seconds: float = ACCESS_TOKEN_SECONDS,
        refresh_grace_seconds: float = REFRESH_GRACE_SECONDS,
        refresh_token_seconds: float = REFRESH_TOKEN_SECONDS,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.minute_seconds = minute_seconds
        self.requests_per_second = requests_per_second
        self.concurrent_limit = concurrent_limit
        self.latency_seconds = latency_seconds
        self.hang_seconds = hang_seconds
        self.strict_minorversion = strict_minorversion
        self.requestid_seconds = requestid_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.calls: list[Call] = []
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._companies: dict[str, Company] = {}
        self._realms = itertools.count(9341455130000001)
        self._ids = itertools.count(1)
        self._clients: dict[str, str] = {}
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self.realm_id = self.company(name="Meterbridge Test Company")
        self.consent_realm = self.realm_id  # the company the next consent connects
        self.oauth = FakeAuthorizationServer(
            access_token_seconds=access_token_seconds,
            refresh_grace_seconds=refresh_grace_seconds,
            refresh_token_seconds=refresh_token_seconds,
            extra_token_fields=self._extra_token_fields,
            callback_params=lambda: {"realmId": self.consent_realm},
            hang_seconds=hang_seconds,
        )
        self.register_client(CLIENT_ID, CLIENT_SECRET)

    # --- the tests' side -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What python-quickbooks calls ``api_url_v3``: ``…/v3``."""
        return f"{self.base_url}/v3"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid_configuration"

    def start(self) -> FakeQuickBooks:
        token_path = "/oauth2/v1/tokens/bearer"
        consent, token = self.oauth.routes(authorize_path="/connect/oauth2", token_path=token_path)
        inner: Callable[[Request], Awaitable[Response]] = token.endpoint
        company = "/v3/company/{realm}"
        routes = [
            consent,
            Route(token_path, self._token_endpoint(inner), methods=["POST"]),
            Route("/v2/oauth2/tokens/revoke", self._revoke, methods=["POST"]),
            Route("/op/v1/jwks", self._jwks, methods=["GET"]),
            *(
                Route(f"/.well-known/{name}{slash}", self._discovery, methods=["GET"])
                for name in ("openid_configuration", "openid_sandbox_configuration")
                for slash in ("", "/")
            ),
            Route(f"{company}/invoice", self._post_invoice, methods=["POST"]),
            Route(f"{company}/invoice/{{id}}", self._get_invoice, methods=["GET"]),
            Route(f"{company}/query", self._query, methods=["GET", "POST"]),
            Route(f"{company}/customer/{{id}}", self._get_customer, methods=["GET"]),
            Route(f"{company}/item/{{id}}", self._get_item, methods=["GET"]),
        ]
        self._server = serve_in_thread(Starlette(routes=routes), self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def register_client(self, client_id: str, client_secret: str) -> None:
        """An app (its keys) that may use OAuth; CLIENT_ID/CLIENT_SECRET are registered."""
        with self._lock:
            self._clients[client_id] = client_secret
        self.oauth.register_client(client_id, client_secret, scope=ACCOUNTING_SCOPE)

    def company(
        self,
        realm_id: str | None = None,
        *,
        name: str = "Sandbox Company",
        home_currency: str = "USD",
        multicurrency: bool = False,
        custom_txn_numbers: bool = True,
    ) -> str:
        with self._lock:
            realm = realm_id or str(next(self._realms))
            self._companies[realm] = Company(
                realm, name, home_currency, multicurrency, custom_txn_numbers
            )
            return realm

    def customer(
        self,
        name: str,
        *,
        realm: str | None = None,
        currency: str | None = None,
        active: bool = True,
    ) -> str:
        """A customer (DisplayName ``name``); its Id is what CustomerRef names."""
        with self._lock:
            company = self._company(realm)
            customer_id = self._id()
            code = currency or company.home_currency
            company.customers[customer_id] = {
                "Id": customer_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "MetaData": _metadata(),
                "DisplayName": name,
                "CompanyName": name,
                "Active": active,
                "CurrencyRef": _currency_ref(code),
                "Balance": Decimal(0),
            }
            return customer_id

    def item(
        self,
        name: str,
        *,
        realm: str | None = None,
        unit_price: Decimal | None = None,
        active: bool = True,
    ) -> str:
        """A Service item; its Id is what ItemRef names."""
        with self._lock:
            company = self._company(realm)
            item_id = self._id()
            company.items[item_id] = {
                "Id": item_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "MetaData": _metadata(),
                "Name": name,
                "FullyQualifiedName": name,
                "Type": "Service",
                "Active": active,
                "UnitPrice": unit_price if unit_price is not None else Decimal(0),
                "IncomeAccountRef": {"value": "1", "name": "Services"},
            }
            return item_id

    def deactivate(self, entity_id: str, *, realm: str | None = None) -> None:
        """Make a customer or item inactive (referencing it then answers 610)."""
        with self._lock:
            company = self._company(realm)
            entity = company.customers.get(entity_id) or company.items[entity_id]
            entity["Active"] = False

    def tax_code(self, name: str, *, realm: str | None = None) -> str:
        """A tax code TaxCodeRef may name (``TAX`` and ``NON`` exist, as in a US company)."""
        with self._lock:
            code_id = self._id()
            self._company(realm).tax_codes[code_id] = name
            return code_id

    def tokens(self, realm: str | None = None, *, scope: str = ACCOUNTING_SCOPE) -> dict[str, Any]:
        """Tokens for ``realm`` as a code exchange would answer them (without the hard
        expiry), without the consent round trip (see :meth:`FakeAuthorizationServer.issue`)."""
        realm = realm or self.realm_id
        issued = self.oauth.issue(CLIENT_ID, scope=scope, params={"realmId": realm})
        return _intuit_token_answer(issued, hard_expiry=False)

    def expire_access_tokens(self) -> None:
        self.oauth.expire_access_tokens()

    def fail_next(self, count: int, kind: str, *, operation: str | None = None) -> None:
        """The next ``count`` API calls (of ``operation``, if given) fail this way, after
        authentication and the throttles:

        ``500`` (SystemFault 10000, nothing done), ``429`` (ThrottleExceeded), ``401`` (the
        expired-token answer), ``hang`` (no answer for ``hang_seconds``, nothing done),
        ``apply_then_hang`` (done, and kept under its requestid, then no answer).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        if operation is not None and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        with self._lock:
            self._faults.extend(Fault(kind, operation) for _ in range(count))

    def pay(self, invoice_id: str, amount: Decimal, *, realm: str | None = None) -> str:
        """A customer payment of ``amount`` applied to the invoice (as if received in
        QuickBooks): Balance goes down, LinkedTxn names the payment, SyncToken moves."""
        with self._lock:
            company = self._company(realm)
            invoice = self._live_invoice(company, invoice_id)
            amount = Decimal(amount)
            if not 0 < amount <= invoice["Balance"]:
                raise ValueError(f"payment {amount} is not within the balance {invoice['Balance']}")
            payment_id = self._id()
            company.payments.setdefault(invoice_id, []).append((payment_id, amount))
            invoice["LinkedTxn"].append({"TxnId": payment_id, "TxnType": "Payment"})
            invoice["Balance"] -= amount
            _touch(invoice)
            return payment_id

    def invoices(self, realm: str | None = None, *, deleted: bool = False) -> list[dict[str, Any]]:
        """The company's invoices as QuickBooks would answer them (numbers as Decimal),
        oldest first; voided ones included, deleted ones only with ``deleted=True``."""
        with self._lock:
            company = self._company(realm)
            return [
                _render(invoice)
                for invoice_id, invoice in company.invoices.items()
                if deleted or invoice_id not in company.deleted
            ]

    def invoice(self, realm: str | None, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            return _render(self._company(realm).invoices[invoice_id])

    def is_deleted(self, invoice_id: str, *, realm: str | None = None) -> bool:
        with self._lock:
            return invoice_id in self._company(realm).deleted

    def applied(self, operation: str, realm: str | None = None) -> list[Call]:
        """Calls of ``operation`` (``"create_invoice"`` …) that wrote something: done, even
        if the answer was then lost; replays excluded."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.operation == operation
                and call.applied
                and not call.replayed
                and (realm is None or call.realm == realm)
            ]

    def calls_to(self, operation: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    def max_concurrent(self, realm: str | None = None) -> int:
        """The most API requests to the company that were in flight at once, refused ones
        included: what a client must keep at or under ``concurrent_limit``."""
        with self._lock:
            return self._company(realm).peak_in_flight

    def peak_rate(self, seconds: float, realm: str | None = None) -> int:
        """The most API calls to the company within any ``seconds`` long window."""
        with self._lock:
            realm = realm or self.realm_id
            times = sorted(call.at for call in self.calls if call.realm == realm)
        return max(
            (bisect.bisect_left(times, at + seconds) - i for i, at in enumerate(times)), default=0
        )

    # --- OAuth side --------------------------------------------------------------------

    def _extra_token_fields(self) -> dict[str, Any]:
        return {
            "x_refresh_token_expires_in": max(1, round(self.refresh_token_seconds)),
            "x_refresh_token_hard_expires_in": REFRESH_TOKEN_HARD_SECONDS,
        }

    def _token_endpoint(
        self, inner: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Intuit's token answer: ``token_type`` ``bearer``, no ``scope``, and the hard
        expiry only for a client that asked for it."""

        async def token(request: Request) -> Response:
            response = await inner(request)
            body = json.loads(bytes(response.body))
            if response.status_code == 200:
                asked = request.headers.get(HARD_EXPIRY_HEADER, "").lower() == "true"
                body = _intuit_token_answer(body, hard_expiry=asked)
            headers = {
                name: value
                for name, value in response.headers.items()
                if name.lower() not in ("content-length", "content-type")
            }
            headers["intuit_tid"] = _tid()
            return JSONResponse(body, status_code=response.status_code, headers=headers)

        return token

    async def _revoke(self, request: Request) -> Response:
        """``POST /v2/oauth2/tokens/revoke`` with ``{"token": …}`` and Basic client auth:
        the app's connection ends (every token the fake issued stops working)."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id, secret = "", ""
        with self._lock:
            known = self._clients.get(client_id)
        if scheme.lower() != "basic" or known is None or known != secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        try:
            token = json.loads(await request.body()).get("token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        self.oauth.revoke(access_tokens=True)
        return Response(status_code=200, headers={"intuit_tid": _tid()})

    async def _discovery(self, _request: Request) -> Response:
        base = self.base_url
        return JSONResponse(
            {
                "issuer": f"{base}/op/v1",
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "address", "phone"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    async def _jwks(self, _request: Request) -> Response:
        return JSONResponse({"keys": []})

    # --- the API's side ----------------------------------------------------------------

    async def _post_invoice(self, request: Request) -> Response:
        operation = request.query_params.get("operation")
        if operation == "void":
            return await self._call(request, "void_invoice", self._void)
        if operation == "delete":
            return await self._call(request, "delete_invoice", self._delete)
        if operation not in (None, "update"):
            return await self._call(request, "", _unsupported_operation)
        update = _has_id(await request.body())
        return await self._call(
            request, "update_invoice" if update else "create_invoice", self._save
        )

    async def _get_invoice(self, request: Request) -> Response:
        return await self._call(request, "read_invoice", self._read_invoice)

    async def _get_customer(self, request: Request) -> Response:
        return await self._call(request, "read_customer", self._read_customer)

    async def _get_item(self, request: Request) -> Response:
        return await self._call(request, "read_item", self._read_item)

    async def _query(self, request: Request) -> Response:
        return await self._call(request, "query", self._run_query)

    async def _call(
        self,
        request: Request,
        operation: str,
        handler: Callable[[Company, Call], Answer],
    ) -> Response:
        raw = await request.body()
        query = dict(request.query_params)
        realm = request.path_params["realm"]
        call = Call(
            request.method,
            request.url.path,
            realm,
            operation,
            query,
            _parse(raw, request),
            query.get("requestid"),
            query.get("minorversion"),
            time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        grant = self.oauth.check_bearer(request)
        if grant is None:
            return self._answer(call, 401, _auth_fault(request))
        with self._lock:
            company = self._companies.get(realm)
        if company is None or grant.params.get("realmId") != realm:
            return self._answer(call, 403, _forbidden_fault())
        with self._lock:
            throttled = self._throttled(company, call.at)
            if throttled:
                return self._answer(call, 429, _throttle_fault())
            company.in_flight += 1
            company.peak_in_flight = max(company.peak_in_flight, company.in_flight)
            crowded = company.in_flight > self.concurrent_limit
        try:
            if crowded:
                return self._answer(call, 429, _throttle_fault())
            if self.latency_seconds:
                await asyncio.sleep(self.latency_seconds)
            return await self._serve(request, company, call, handler)
        finally:
            with self._lock:
                company.in_flight -= 1

    async def _serve(
        self,
        request: Request,
        company: Company,
        call: Call,
        handler: Callable[[Company, Call], Answer],
    ) -> Response:
        fault = self._next_fault(call.operation)
        kind = fault.kind if fault else None
        call.fault = kind
        if kind == "500":
            return self._answer(call, 500, _system_fault())
        if kind == "429":
            return self._answer(call, 429, _throttle_fault())
        if kind == "401":
            return self._answer(call, 401, _auth_fault(request))
        if kind == "hang":
            await asyncio.sleep(self.hang_seconds)
            return self._answer(call, 504, _system_fault())
        if "application/json" not in request.headers.get("accept", ""):
            call.status = 406
            return Response(
                "The fake answers JSON only (QuickBooks answers XML unless the request"
                " accepts application/json): send Accept: application/json",
                status_code=406,
                media_type="text/plain",
            )
        try:
            self._check_parameters(call)
        except _Fault as refused:
            return self._answer(call, refused.status, refused.body)
        with self._lock:
            saved = self._saved(company, call)
            if saved is not None:
                call.replayed = True
            else:
                try:
                    status, body = handler(company, call)
                except _Fault as refused:
                    status, body = refused.status, refused.body
                saved = _Saved(status, body, time.monotonic())
                if call.request_id is not None and status < 300:
                    company.saved[call.request_id] = saved
                call.status = status  # done now, even if the answer is then lost
        if kind == "apply_then_hang" and not call.replayed:
            await asyncio.sleep(self.hang_seconds)
        return self._answer(call, saved.status, saved.body)

    def _check_parameters(self, call: Call) -> None:
        version = call.minorversion
        if self.strict_minorversion and (
            version is None or not version.isdigit() or int(version) < MINIMUM_MINOR_VERSION
        ):
            raise _Fault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: minorversion {version!r} is below"
                f" {MINIMUM_MINOR_VERSION} (fake's strictness: QuickBooks ignores it and"
                f" answers as {MINIMUM_MINOR_VERSION})",
            )
        if call.request_id is not None and not 0 < len(call.request_id) <= REQUEST_ID_MAX:
            raise _Fault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: requestid must be 1 to {REQUEST_ID_MAX}"
                " characters (fake's wording: Intuit documents the limit, not the answer)",
                "requestid",
            )

    def _saved(self, company: Company, call: Call) -> _Saved | None:
        if call.request_id is None:
            return None
        saved = company.saved.get(call.request_id)
        if saved is None:
            return None
        keep = self.requestid_seconds
        if keep is not None and time.monotonic() - saved.at >= keep:
            del company.saved[call.request_id]
            return None
        return saved

    def _throttled(self, company: Company, now: float) -> bool:
        window = company.requests
        while window and now - window[0] >= self.minute_seconds:
            window.popleft()
        if len(window) >= self.requests_per_minute:
            return True
        per_second = self.requests_per_second
        if per_second is not None and sum(1 for at in window if now - at < 1.0) >= per_second:
            return True
        window.append(now)
        return False

    def _next_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation in (None, operation):
                    self._faults.remove(fault)
                    return fault
            return None

    def _answer(self, call: Call, status: int, body: dict[str, Any]) -> Response:
        call.status = status
        content = json.dumps(body, default=_json_number, separators=(",", ":"))
        return Response(
            content,
            status_code=status,
            media_type="application/json",
            headers={"intuit_tid": _tid()},
        )

    # --- operations (run under the lock; raise _Fault for an error answer) ----------------

    def _save(self, company: Company, call: Call) -> Answer:
        body = _object(call.body)
        _only(body, _INVOICE_FIELDS, "Invoice")
        if call.operation == "update_invoice":
            invoice = self._update(company, call, body)
        else:
            invoice = self._create(company, call, body)
        call.applied = True
        return 200, {"Invoice": _render(invoice), "time": _time()}

    def _create(self, company: Company, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        invoice_id = self._id()
        invoice: dict[str, Any] = {
            "Id": invoice_id,
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": _metadata(),
            "LinkedTxn": [],
        }
        self._write(company, call, invoice, body)
        company.invoices[invoice_id] = invoice
        return invoice

    def _update(self, company: Company, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        current = self._current(company, body)
        sparse = body.get("sparse") in (True, "true")
        fields = {**_writable(current), **body} if sparse else body
        updated = copy.deepcopy(current)
        for name in _writable(current):
            updated.pop(name, None)
        self._write(company, call, updated, fields, invoice_id=current["Id"])
        _touch(updated)
        company.invoices[current["Id"]] = updated
        return updated

    def _void(self, company: Company, call: Call) -> Answer:
        body = _object(call.body)
        invoice = self._current(company, body)
        if company.payments.get(invoice["Id"]):
            raise _Fault(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: this invoice has a payment applied to it and"
                " cannot be voided; remove or unapply the payment first (fake's wording)",
            )
        for line in invoice["Line"]:
            line["Amount"] = Decimal(0)
            detail = line.get("SalesItemLineDetail")
            if detail is not None:
                detail.pop("Qty", None)
                detail.pop("UnitPrice", None)
        invoice["TotalAmt"] = Decimal(0)
        invoice["Balance"] = Decimal(0)
        note = invoice.get("PrivateNote")
        invoice["PrivateNote"] = f"Voided - {note}" if note else "Voided"
        _touch(invoice)
        call.applied = True
        return 200, {"Invoice": _render(invoice), "time": _time()}

    def _delete(self, company: Company, call: Call) -> Answer:
        body = _object(call.body)
        invoice = self._current(company, body)
        company.deleted.add(invoice["Id"])
        call.applied = True
        return 200, {
            "Invoice": {"status": "Deleted", "domain": "QBO", "Id": invoice["Id"]},
            "time": _time(),
        }

    def _read_invoice(self, company: Company, call: Call) -> Answer:
        invoice_id = call.path.rstrip("/").rsplit("/", 1)[-1]
        invoice = self._live_invoice(company, invoice_id)
        return 200, {"Invoice": _render(invoice), "time": _time()}

    def _read_customer(self, company: Company, call: Call) -> Answer:
        customer_id = call.path.rstrip("/").rsplit("/", 1)[-1]
        customer = company.customers.get(customer_id)
        if customer is None:
            raise _not_found(customer_id)
        return 200, {"Customer": copy.deepcopy(customer), "time": _time()}

    def _read_item(self, company: Company, call: Call) -> Answer:
        item_id = call.path.rstrip("/").rsplit("/", 1)[-1]
        item = company.items.get(item_id)
        if item is None:
            raise _not_found(item_id)
        return 200, {"Item": copy.deepcopy(item), "time": _time()}

    def _run_query(self, company: Company, call: Call) -> Answer:
        if call.method == "GET":
            statement = call.query.get("query", "")
        else:
            statement = call.body if isinstance(call.body, str) else ""
        parsed = _parse_query(statement)
        rows: list[dict[str, Any]]
        if parsed.entity == "Invoice":
            rows = [
                invoice
                for invoice_id, invoice in company.invoices.items()
                if invoice_id not in company.deleted
            ]
        elif parsed.entity == "Customer":
            rows = list(company.customers.values())
        else:
            rows = list(company.items.values())
        if parsed.entity != "Invoice" and not any(c[0] == "Active" for c in parsed.where):
            rows = [row for row in rows if row["Active"]]
        rows = [row for row in rows if all(_matches(row, c) for c in parsed.where)]
        for name, descending in reversed(parsed.order):
            rows.sort(key=functools.partial(_order_key, name=name), reverse=descending)
        if parsed.count:
            return 200, {"QueryResponse": {"totalCount": len(rows)}, "time": _time()}
        page = rows[parsed.start - 1 : parsed.start - 1 + parsed.limit]
        if not page:
            return 200, {"QueryResponse": {}, "time": _time()}
        rendered = [
            _project(_render(row) if parsed.entity == "Invoice" else copy.deepcopy(row), parsed)
            for row in page
        ]
        response = {
            parsed.entity: rendered,
            "startPosition": parsed.start,
            "maxResults": len(rendered),
        }
        return 200, {"QueryResponse": response, "time": _time()}

    # --- the invoice's rules -----------------------------------------------------------

    def _current(self, company: Company, body: dict[str, Any]) -> dict[str, Any]:
        """The invoice an update, void or delete names, at the SyncToken it sends."""
        invoice_id = body.get("Id")
        if invoice_id in (None, ""):
            raise _missing("Id")
        invoice = self._live_invoice(company, str(invoice_id))
        token = body.get("SyncToken")
        if token in (None, ""):
            raise _missing("SyncToken")
        if str(token) != invoice["SyncToken"]:
            raise _Fault(
                "5010",
                "Stale Object Error",
                "Stale Object Error : You and root were working on this at the same time."
                " root finished before you did, so your work was not saved.",
                "SyncToken",
            )
        return invoice

    def _live_invoice(self, company: Company, invoice_id: str) -> dict[str, Any]:
        invoice = company.invoices.get(invoice_id)
        if invoice is None or invoice_id in company.deleted:
            raise _not_found(invoice_id)
        return invoice

    def _write(
        self,
        company: Company,
        call: Call,
        invoice: dict[str, Any],
        body: dict[str, Any],
        *,
        invoice_id: str | None = None,
    ) -> None:
        """Fill ``invoice``'s writable fields from ``body`` (create or update)."""
        customer = self._reference(company.customers, body.get("CustomerRef"), "CustomerRef")
        invoice["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        invoice["CurrencyRef"] = self._currency(company, customer, body.get("CurrencyRef"))
        allow_duplicates = "allowduplicatedocnum" in call.query.get("include", "").split(",")
        doc_number = self._doc_number(company, body.get("DocNumber"), invoice_id, allow_duplicates)
        if doc_number is not None:
            invoice["DocNumber"] = doc_number
        txn_date = _date(body.get("TxnDate"), "TxnDate") or _today()
        invoice["TxnDate"] = txn_date
        invoice["DueDate"] = _date(body.get("DueDate"), "DueDate") or txn_date
        note = _text(body.get("PrivateNote"), "PrivateNote", TEXT_MAX)
        if note:
            invoice["PrivateNote"] = note
        memo = body.get("CustomerMemo")
        if memo not in (None, ""):
            value = _text(_object(memo, "CustomerMemo").get("value"), "CustomerMemo", MEMO_MAX)
            invoice["CustomerMemo"] = {"value": value}
        for name in _KEPT_AS_GIVEN:
            if name in body and body[name] not in (None, ""):
                invoice[name] = copy.deepcopy(body[name])
        if "Line" not in body:
            raise _missing("Line")
        invoice["Line"] = self._lines(company, body["Line"])
        total = sum((line["Amount"] for line in invoice["Line"]), Decimal(0))
        paid = sum((amount for _, amount in company.payments.get(invoice_id or "", [])), Decimal(0))
        invoice["TotalAmt"] = total
        invoice["Balance"] = total - paid
        invoice.setdefault("LinkedTxn", [])

    def _lines(self, company: Company, lines: Any) -> list[dict[str, Any]]:
        if not isinstance(lines, list):
            raise _invalid("Line", "Line must be an array")
        kept: list[dict[str, Any]] = []
        for index, raw in enumerate(lines):
            line = _object(raw, f"Line[{index}]")
            _only(line, _LINE_FIELDS, f"Line[{index}]")
            kind = line.get("DetailType")
            if kind in (None, ""):
                raise _missing("Line.DetailType")
            if kind == "SubTotalLineDetail":
                continue  # QuickBooks computes the subtotal line; one sent back is ignored
            number = len(kept) + 1
            entry: dict[str, Any] = {"Id": str(number), "LineNum": number}
            description = _text(line.get("Description"), "Line.Description", TEXT_MAX)
            if description:
                entry["Description"] = description
            if kind == "DescriptionOnly":
                entry.update(Amount=Decimal(0), DetailType=kind, DescriptionLineDetail={})
                kept.append(entry)
                continue
            if kind != "SalesItemLineDetail":
                raise _strict(
                    f"Line[{index}].DetailType {kind!r}: the fake models SalesItemLineDetail,"
                    " DescriptionOnly and SubTotalLineDetail lines only",
                    "Line.DetailType",
                )
            entry["Amount"] = self._line_amount(line, index)
            entry["DetailType"] = kind
            entry["SalesItemLineDetail"] = self._sales_detail(company, line, entry["Amount"])
            kept.append(entry)
        return kept

    def _line_amount(self, line: dict[str, Any], index: int) -> Decimal:
        if line.get("Amount") in (None, ""):
            raise _missing("Line.Amount")
        amount = _number(line["Amount"], "Line.Amount")
        if _places(amount) > 2:
            raise _strict(
                f"Line[{index}].Amount {amount} has more than 2 decimal places", "Line.Amount"
            )
        return amount.quantize(CENT)

    def _sales_detail(
        self, company: Company, line: dict[str, Any], amount: Decimal
    ) -> dict[str, Any]:
        raw = _object(line.get("SalesItemLineDetail") or {}, "SalesItemLineDetail")
        _only(raw, _DETAIL_FIELDS, "SalesItemLineDetail")
        if raw.get("ItemRef") in (None, ""):
            raise _strict("SalesItemLineDetail.ItemRef is required by the fake", "Line.ItemRef")
        item = self._reference(company.items, raw["ItemRef"], "Line.SalesItemLineDetail.ItemRef")
        detail: dict[str, Any] = {"ItemRef": {"value": item["Id"], "name": item["Name"]}}
        qty = _optional_number(raw.get("Qty"), "Qty")
        price = _optional_number(raw.get("UnitPrice"), "UnitPrice")
        for name, given in (("Qty", qty), ("UnitPrice", price)):
            if given is not None and _places(given) > 7:
                raise _strict(f"{name} {given} has more than 7 decimal places", f"Line.{name}")
        if qty is not None and price is not None and not (qty == 0 and price == 0):
            expected = (qty * price).quantize(CENT, rounding=ROUND_HALF_UP)
            if expected != amount:
                raise _Fault(
                    "6070",
                    "Amount is not equal to UnitPrice * Qty",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount:,}",
                    "Line.Amount",
                )
        if qty is not None:
            detail["Qty"] = qty
        if price is not None:
            detail["UnitPrice"] = price
        service_date = _date(raw.get("ServiceDate"), "ServiceDate")
        if service_date:
            detail["ServiceDate"] = service_date
        tax = raw.get("TaxCodeRef")
        if tax not in (None, ""):
            value = str(_object(tax, "TaxCodeRef").get("value", ""))
            if value not in company.tax_codes:
                raise _Fault(
                    "2500",
                    "Invalid Reference Id",
                    f"Invalid Reference Id : TaxCodes element id {value} not found",
                    "Line.SalesItemLineDetail.TaxCodeRef",
                )
            detail["TaxCodeRef"] = {"value": value}
        return detail

    def _reference(
        self, entities: dict[str, dict[str, Any]], ref: Any, element: str
    ) -> dict[str, Any]:
        if ref in (None, ""):
            raise _missing(element)
        value = str(_object(ref, element).get("value", ""))
        entity = entities.get(value)
        if entity is None:
            table = "Names" if element == "CustomerRef" else "Items"
            raise _Fault(
                "2500",
                "Invalid Reference Id",
                f"Invalid Reference Id : {table} element id {value} not found",
                element,
            )
        if not entity["Active"]:
            raise _Fault(
                "610",
                "Object Not Found",
                "Object Not Found : Something you're trying to use has been made inactive."
                " Check the fields with accounts, customers, items, vendors or employees.",
                element,
            )
        return entity

    def _currency(self, company: Company, customer: dict[str, Any], ref: Any) -> dict[str, str]:
        wanted = customer["CurrencyRef"]["value"]
        if ref not in (None, ""):
            code = str(_object(ref, "CurrencyRef").get("value", ""))
            if code != wanted:
                raise _strict(
                    f"CurrencyRef {code} is not the customer's currency {wanted}"
                    + ("" if company.multicurrency else " (multicurrency is off)"),
                    "CurrencyRef",
                )
        return _currency_ref(wanted)

    def _doc_number(
        self, company: Company, value: Any, invoice_id: str | None, allow_duplicates: bool
    ) -> str | None:
        if value in (None, ""):
            if company.custom_txn_numbers:
                return None
            numbers = [
                int(i["DocNumber"])
                for i in company.invoices.values()
                if str(i.get("DocNumber", "")).isdigit()
            ]
            return str(max(numbers, default=1000) + 1)
        if not isinstance(value, str):
            raise _invalid("DocNumber", "DocNumber must be a string")
        if len(value) > DOC_NUMBER_MAX:
            raise _strict(f"DocNumber is longer than {DOC_NUMBER_MAX} characters", "DocNumber")
        if not allow_duplicates:
            for other_id, other in company.invoices.items():
                if (
                    other_id != invoice_id
                    and other_id not in company.deleted
                    and other.get("DocNumber") == value
                ):
                    raise _Fault(
                        "6140",
                        "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different"
                        f" number. This number has already been used. DocNumber={value}"
                        f" is assigned to TxnType=Invoice with TxnId={other_id}",
                        "DocNumber",
                    )
        return value

    # --- helpers -------------------------------------------------------------------------

    def _company(self, realm: str | None) -> Company:
        return self._companies[realm or self.realm_id]

    def _id(self) -> str:
        return str(100 + next(self._ids))


# --- the query language ----------------------------------------------------------------------


@dataclass
class _Query:
    entity: str
    count: bool
    fields: list[str] | None  # None: *
    where: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]  # (field, descending)
    start: int
    limit: int


_TOKEN = re.compile(
    r"\s*('(?:[^'\\]|\\.)*'|\(|\)|,|<=|>=|!=|<>|=|<|>|\*|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?)"
)


def _parse_query(statement: str) -> _Query:
    tokens: list[str] = []
    position = 0
    text = statement.strip()
    while position < len(text):
        matched = _TOKEN.match(text, position)
        if matched is None:
            raise _query_error(f'QueryParserError: Encountered "{text[position:][:20]}"')
        tokens.append(matched.group(1))
        position = matched.end()
        while position < len(text) and text[position].isspace():
            position += 1
    cursor = _Cursor(tokens)
    cursor.keyword("select")
    count, fields = False, None
    if cursor.peek_is("count"):
        cursor.next()
        for expected in ("(", "*", ")"):
            cursor.expect(expected)
        count = True
    else:
        fields = [cursor.next()]
        while cursor.peek_is(","):
            cursor.next()
            fields.append(cursor.next())
        if "*" in fields:  # "select *, Sku from Item" (python-quickbooks' Item.all)
            fields = None
    cursor.keyword("from")
    entity = cursor.next()
    entity = next((name for name in _QUERYABLE if name.lower() == entity.lower()), entity)
    if entity not in _QUERYABLE:
        raise _query_error(f"QueryValidationError: the fake does not query {entity}")
    query = _Query(entity, count, fields, [], [], 1, DEFAULT_RESULTS)
    if cursor.peek_is("where"):
        cursor.next()
        query.where.append(_condition(cursor, entity))
        while cursor.peek_is("and"):
            cursor.next()
            query.where.append(_condition(cursor, entity))
        if cursor.peek_is("or"):
            raise _query_error('QueryParserError: Encountered " <OR> "OR "" (OR is not supported)')
    if cursor.peek_is("order") or cursor.peek_is("orderby"):
        if cursor.next().lower() == "order":
            cursor.keyword("by")
        while True:
            name = _queryable(entity, cursor.next())
            descending = False
            if cursor.peek_is("asc") or cursor.peek_is("desc"):
                descending = cursor.next().lower() == "desc"
            query.order.append((name, descending))
            if not cursor.peek_is(","):
                break
            cursor.next()
    if cursor.peek_is("startposition"):
        cursor.next()
        query.start = max(1, _whole(cursor.next()))
    if cursor.peek_is("maxresults"):
        cursor.next()
        query.limit = min(MAX_RESULTS, max(1, _whole(cursor.next())))
    if not cursor.done():
        raise _query_error(f'QueryParserError: Encountered "{cursor.next()}"')
    return query


class _Cursor:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = 0

    def done(self) -> bool:
        return self.index >= len(self.tokens)

    def peek_is(self, word: str) -> bool:
        return not self.done() and self.tokens[self.index].lower() == word

    def next(self) -> str:
        if self.done():
            raise _query_error("QueryParserError: Encountered <EOF>")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, token: str) -> None:
        got = self.next()
        if got.lower() != token:
            raise _query_error(f'QueryParserError: Encountered "{got}", expected "{token}"')

    keyword = expect


def _condition(cursor: _Cursor, entity: str) -> tuple[str, str, Any]:
    name = _queryable(entity, cursor.next())
    operator = cursor.next().lower()
    if operator == "in":
        cursor.expect("(")
        values = [_literal(cursor.next())]
        while cursor.peek_is(","):
            cursor.next()
            values.append(_literal(cursor.next()))
        cursor.expect(")")
        return name, "in", values
    if operator not in ("=", "<", ">", "<=", ">=", "like"):
        raise _query_error(f'QueryParserError: Encountered "{operator}"')
    return name, operator, _literal(cursor.next())


def _queryable(entity: str, name: str) -> str:
    if name not in _QUERYABLE[entity]:
        raise _query_error(f"QueryValidationError: property '{name}' is not queryable")
    return name


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    if token.lower() in ("true", "false"):
        return token.lower() == "true"
    if _NUMBER.fullmatch(token):
        return Decimal(token)
    raise _query_error(f'QueryParserError: Encountered "{token}"')


def _whole(token: str) -> int:
    if not token.isdigit():
        raise _query_error(f'QueryParserError: Encountered "{token}"')
    return int(token)


def _value(row: dict[str, Any], name: str) -> Any:
    value: Any = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    if name == "Id" and isinstance(value, str) and value.isdigit():
        return Decimal(value)  # Ids compare and sort as numbers
    return value


def _matches(row: dict[str, Any], condition: tuple[str, str, Any]) -> bool:
    name, operator, wanted = condition
    have = _value(row, name)
    if have is None:
        return False
    if operator == "in":
        return any(_compare(have, value) == 0 for value in wanted)
    if operator == "like":
        pattern = ".*".join(re.escape(part) for part in str(wanted).split("%"))
        return re.fullmatch(pattern, str(have), re.IGNORECASE | re.DOTALL) is not None
    order = _compare(have, wanted)
    if order is None:
        return False
    return {
        "=": order == 0,
        "<": order < 0,
        ">": order > 0,
        "<=": order <= 0,
        ">=": order >= 0,
    }[operator]


def _compare(have: Any, wanted: Any) -> int | None:
    """-1, 0 or 1 as ``have`` is below, equal to or above the literal; None when they do
    not compare (a string property against a number, …)."""
    if isinstance(have, bool) or isinstance(wanted, bool):
        if not (isinstance(have, bool) and isinstance(wanted, bool)):
            return None
        return int(have > wanted) - int(have < wanted)
    if isinstance(have, int | Decimal):
        if isinstance(wanted, str):
            if not _NUMBER.fullmatch(wanted):
                return None
            wanted = Decimal(wanted)
        number = Decimal(have)
        return int(number > wanted) - int(number < wanted)
    if isinstance(have, str):
        text = str(wanted)
        return int(have > text) - int(have < text)
    return None


def _order_key(row: dict[str, Any], name: str) -> tuple[bool, Any]:
    value = _value(row, name)
    return value is None, value if value is not None else ""


def _project(row: dict[str, Any], query: _Query) -> dict[str, Any]:
    if query.fields is None:
        return row
    keep = {"Id", "SyncToken", "domain", *query.fields}
    projected = {name: value for name, value in row.items() if name in keep}
    projected["sparse"] = True
    return projected


# --- pieces ------------------------------------------------------------------------------------


def _unsupported_operation(_company: Company, call: Call) -> Answer:
    raise _Fault(
        "500",
        "Unsupported Operation",
        f"Operation {call.query.get('operation')} is not supported",
    )


def _intuit_token_answer(body: dict[str, Any], *, hard_expiry: bool) -> dict[str, Any]:
    """Intuit's token answer: ``token_type`` ``bearer``, no ``scope``; the hard expiry only
    for a client that asked for it."""
    answer = {name: value for name, value in body.items() if name != "scope"}
    answer["token_type"] = "bearer"
    if not hard_expiry:
        answer.pop("x_refresh_token_hard_expires_in", None)
    return answer


def _render(invoice: dict[str, Any]) -> dict[str, Any]:
    """The invoice as QuickBooks answers it: the lines, then a SubTotalLine."""
    rendered = copy.deepcopy(invoice)
    rendered["Line"] = [
        *rendered["Line"],
        {
            "Amount": rendered["TotalAmt"],
            "DetailType": "SubTotalLineDetail",
            "SubTotalLineDetail": {},
        },
    ]
    rendered.setdefault("TxnTaxDetail", {"TotalTax": Decimal(0)})
    rendered.setdefault("PrintStatus", "NotSet")
    rendered.setdefault("EmailStatus", "NotSet")
    rendered.setdefault("ApplyTaxAfterDiscount", False)
    rendered.setdefault("Deposit", Decimal(0))
    return rendered


def _writable(invoice: dict[str, Any]) -> dict[str, Any]:
    """The invoice's fields a full update rewrites (everything but the system's)."""
    system = {"Id", "SyncToken", "domain", "sparse", "MetaData", "LinkedTxn", "TotalAmt", "Balance"}
    return {name: value for name, value in invoice.items() if name not in system}


def _touch(invoice: dict[str, Any]) -> None:
    invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
    invoice["MetaData"]["LastUpdatedTime"] = _stamp()


def _has_id(raw: bytes) -> bool:
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("Id") not in (None, "", 0, "0")


def _parse(raw: bytes, request: Request) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if request.url.path.endswith("/query"):
        return text
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return _Unparsed(text)


class _Unparsed(str):
    """A body that is not JSON."""


def _object(value: Any, element: str = "Invoice") -> dict[str, Any]:
    if isinstance(value, _Unparsed) or not isinstance(value, dict):
        raise _invalid(element, f"{element} must be a JSON object")
    return value


def _only(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _invalid(f"{where}.{unknown[0]}", f"{where} has no property {unknown[0]}")


def _number(value: Any, element: str) -> Decimal:
    if isinstance(value, bool):
        raise _invalid(element, f"{element} must be a number")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return Decimal(value.strip())
    raise _invalid(element, f"{element} must be a number")


def _optional_number(value: Any, element: str) -> Decimal | None:
    return None if value in (None, "") else _number(value, element)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _text(value: Any, element: str, limit: int) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _invalid(element, f"{element} must be a string")
    if len(value) > limit:
        raise _strict(f"{element} is longer than {limit} characters", element)
    return value


def _date(value: Any, element: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _invalid(element, f"{element} must be a date, yyyy-MM-dd")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise _invalid(element, f"{element} must be a date, yyyy-MM-dd") from exc
    return value


def _currency_ref(code: str) -> dict[str, str]:
    return {"value": code, "name": CURRENCY_NAMES.get(code, code)}


def _missing(element: str) -> _Fault:
    return _Fault(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element,
    )


def _invalid(element: str, why: str) -> _Fault:
    return _Fault(
        "2010",
        "Request has invalid or unsupported property",
        "Property Name:failed to parse json object; a property specified is unsupported or"
        f" invalid ({why})",
        element,
    )


def _strict(why: str, element: str) -> _Fault:
    return _Fault(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {why} (fake's strictness: QuickBooks' answer is undocumented)",
        element,
    )


def _not_found(entity_id: str) -> _Fault:
    return _Fault(
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. Check the"
        f" fields with accounts, customers, items, vendors or employees. (Id {entity_id})",
    )


def _query_error(detail: str) -> _Fault:
    return _Fault("4000", "Error parsing query", detail)


def _system_fault() -> dict[str, Any]:
    return _Fault(
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred while accessing or saving your"
        " data. Please wait a few minutes and try again.",
        status=500,
        kind="SystemFault",
    ).body


def _throttle_fault() -> dict[str, Any]:
    return _Fault(
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.",
        status=429,
        kind="SERVICE",
    ).body


def _lower_fault(message: str, detail: str, code: str, kind: str) -> dict[str, Any]:
    """The lower-case envelope QuickBooks answers authentication failures with."""
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [{"message": message, "detail": detail, "code": code, "element": None}],
            "type": kind,
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(time.time() * 1000),
        "status": None,
        "cdcresponse": [],
    }


def _auth_fault(request: Request) -> dict[str, Any]:
    _, _, token = request.headers.get("authorization", "").partition(" ")
    return _lower_fault(
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        f"Token expired: {token.strip()[:40]}",
        "3200",
        "AUTHENTICATION",
    )


def _forbidden_fault() -> dict[str, Any]:
    return _lower_fault(
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "",
        "3100",
        "SERVICE",
    )


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _metadata() -> dict[str, str]:
    stamp = _stamp()
    return {"CreateTime": stamp, "LastUpdatedTime": stamp}


def _stamp() -> str:
    return datetime.now(UTC).astimezone(COMPANY_TZ).isoformat(timespec="seconds")


def _time() -> str:
    now = datetime.now(UTC).astimezone(COMPANY_TZ)
    return now.isoformat(timespec="milliseconds")


def _today() -> str:
    return datetime.now(UTC).astimezone(COMPANY_TZ).date().isoformat()


def _tid() -> str:
    return f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"
