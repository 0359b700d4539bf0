# mypy: disable-error-code="import-untyped"
"""A fake NetSuite: a real HTTP server the tests start, implementing the part of SuiteTalk REST
web services meterbridge uses (the invoice record), with NetSuite's two ways in (OAuth 2.0
client credentials with a signed JWT, and Token-Based Authentication), its error format, its
per-account concurrency limit, and fault injection.

    fake = FakeNetSuite(account_id="1234567").start()   # fake.url stands for
                                                        # https://1234567.suitetalk.api.netsuite.com
    fake.register_certificate(client_id, certificate_id, public_key_pem)    # M2M mapping
    fake.register_tba(consumer_key, consumer_secret, token_id, token_secret)
    customer = fake.customer("Acme"); sub = fake.subsidiary(); item = fake.item("Usage")
    fake.fail_next(2, "500")                 # the next two calls answer 500
    fake.fail_next(1, "429")                 # ... 429 as over the concurrency limit
    fake.fail_next(1, "401")                 # ... a spurious INVALID_LOGIN
    fake.fail_next(1, "hang")                # ... no answer for hang_seconds, nothing done
    fake.fail_next(1, "apply_then_hang", endpoint="upsert")   # done, then the answer is lost
    fake.pay(invoice_id)                     # a customer payment applied to the invoice
    fake.invoices(); fake.invoice_by_external_id("bill-1")
    fake.expire_access_tokens(); fake.revoke_certificate(certificate_id)
    fake.latency = 0.5                       # every record call takes half a second
    fake.calls; fake.token_requests; fake.audit_trail; fake.in_flight(); fake.max_concurrent()

For the tests, once: the test integration's ``CLIENT_ID`` (M2M) and ``CONSUMER_KEY``,
``CONSUMER_SECRET``, ``TOKEN_ID``, ``TOKEN_SECRET`` (TBA); ``public_pem(key)`` and
``private_pem(key)`` for a cryptography key; ``open_books(fake)``, the :class:`Books` a test
writes invoices against (a subsidiary, a customer of it, a usage item and a fee item).

What it reproduces, and the sources (Oracle's NetSuite help unless said otherwise; "ns-help/X"
is https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/X.html):

Token endpoint, ``POST /services/rest/auth/oauth2/v1/token`` (ns-help/section_162755359851):
form-encoded ``grant_type=client_credentials``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
``client_assertion=<JWT>``. The JWT (ns-help/section_162790605110): header ``typ`` JWT, ``alg``
one of PS256/PS384/PS512/ES256/ES384/ES512 (RS256 and anything else refused), ``kid`` the
certificate ID of the M2M mapping; claims ``iss`` the integration's client ID, ``scope``
"restlets, rest_webservices, suite_analytics, or all of them, separated by a comma" (Oracle's
own sample request carries a JSON list, ``["restlets", "rest_webservices"]``, so both forms
are taken; ``mcp`` only alone, ns-help/section_158255317571), ``aud`` the token endpoint URL
(here :attr:`token_url`), ``iat`` and ``exp`` (numbers; Oracle's Python sample sends floats,
ns-help/article_0907012935) with ``exp`` at most 60 minutes after ``iat`` (Oracle's sample
request has exactly 3600, so 3600 passes). The signature is verified with the public key of
the certificate named by ``kid``; it must belong to the client named by ``iss``. The answer is
``{"access_token", "expires_in": "3600", "token_type": "bearer"}``; the access token "is valid
for 60 minutes" and there is no refresh token. The access token is a JWT (as NetSuite's is),
signed here with a key of the fake's own.

TBA on the record API (ns-help/subsect_156935170194, section_1534941538): ``Authorization:
OAuth realm=…, oauth_consumer_key, oauth_token, oauth_signature_method="HMAC-SHA256",
oauth_timestamp, oauth_nonce, oauth_version="1.0", oauth_signature``, the OAuth 1.0a signature
(RFC 5849) checked with oauthlib. ``realm`` is the account ID as NetSuite writes it: upper case
with an underscore (``123456_SB1``), while the host name is lower case with a hyphen
(``123456-sb1``): a lower-case ``_sb1`` realm is an invalid login (fylein/netsuite-sdk-py#29,
netsuitephp/netsuite-php#121), and the community ``netsuite`` package sends the configured
account as the realm and slugifies it only for the host. A nonce shorter than 6 characters
(``nonce_rejected``), a nonce and timestamp already used with the token (``NonceUsed``), a
timestamp more than 5 minutes from the server's (``InvalidTimestamp``, ns-help/
subsect_156934879823), an unknown consumer key or token, or a bad signature are refused.

Record API (bearer token or TBA; otherwise 401): every failure is ``{"type", "title",
"status", "o:errorDetails": [{"detail", "o:errorCode", "o:errorPath"?}]}`` (ns-help/
section_156570709583). A refused login is 401 ``INVALID_LOGIN`` "Invalid login attempt. For
more details, see the Login Audit Trail…" (verbatim in jacobsvante/netsuite#27 and
drudge/n8n-nodes-netsuite#9), with ``WWW-Authenticate: Bearer realm="<account>",
error="invalid_token", error_description="Invalid login attempt."`` (ns-help/
subsect_158521885412); why it was refused is only in the Login Audit Trail, here
:attr:`audit_trail`. A missing record is 404 ``NONEXISTENT_ID``, a malformed ID 400
``INVALID_ID`` with ``o:errorUrl`` (the URL path); a refused write is 400
``USER_ERROR`` "Error while accessing a resource. …" with ``o:errorPath`` where it applies
(third-party captures of real answers).

- ``PUT /record/v1/invoice/eid:{externalId}`` upserts (ns-help/section_156335203191): creates
  the invoice or updates the one with that external ID. External IDs hold only letters,
  digits, ``_`` and ``-`` (ns-help/section_156334828635); an external ID can stand wherever an
  internal ID can, so GET, PATCH and DELETE take ``eid:…`` too. A write answers 204 with a
  ``Location`` header naming the record by internal ID (ns-help/section_1545141395 for create,
  section_1545142173 for update; the upsert page shows no answer, so this is by analogy).
- An update, by PUT or PATCH, changes the fields given and keeps the others. The invoice's
  ``item`` sublist is keyed by ``line`` (ns-help/section_0209053443): without ``replace``, a
  given line with a ``line`` that exists updates that line and a line without one is
  appended (ns-help/section_1545295601); with ``?replace=item`` the lines that match are
  updated, the others removed and the new ones added (ns-help/section_1545297048). So an
  upsert sent twice without ``replace=item`` doubles the lines, as an update does.
- ``GET /record/v1/invoice/{id}`` answers body fields, with the item sublist as links only
  unless ``expandSubResources=true`` (ns-help/section_1545141947), as
  ``application/vnd.oracle.resource+json; type=singular`` (ns-help/section_1545141500).
  References are ``{"links", "id", "refName"}``.
- Lines: ``item {id}`` (must be a :meth:`item`), ``quantity`` (default 1), ``rate``,
  ``amount`` (computed as quantity * rate, to the cent, when absent; the rate is the item's
  base price when neither is given), ``description``. Body: ``entity {id}`` (a
  :meth:`customer`), ``subsidiary {id}`` (a :meth:`subsidiary`), ``currency {id}`` (default the
  customer's), ``tranDate``, ``dueDate`` (``YYYY-MM-DD``), ``externalId``, ``memo``. An invoice
  needs at least one line ("You must enter at least one line item for this transaction.").
- Concurrency is governed per account across all web services (ns-help/subsect_1559222360,
  the 2017.2 concurrency governance notes); ``concurrency_limit`` (default 5) requests may be
  in flight, the next is refused at once with 429 ``CONCURRENCY_LIMIT_EXCEEDED`` "Concurrent
  request limit exceeded. Request blocked." That status and body come from third-party
  material only (a public troubleshooting note; RESTlets get 400 ``SSS_REQUEST_LIMIT_EXCEEDED``
  instead): UNCONFIRMED by Oracle. There is no ``Retry-After``. Some report spurious 401s
  when over the limit: ``fail_next(n, "401")`` gives those. ``latency`` (default 0) makes
  every record call take that long, counted as in flight, so calls made at once overlap as
  real NetSuite calls do and the limit can be reached; the token endpoint answers at once.

Where the fake is stricter than anything documented, or its wording its own:
- Token errors are 400 ``{"error", "error_description"}`` with RFC 6749 §5.2 codes
  (``invalid_request``, ``invalid_client`` for an unknown or revoked certificate, a bad
  signature or an ``iss`` not the certificate's client, ``invalid_grant`` for ``aud``, ``exp``
  and lifetime, ``invalid_scope``, ``unsupported_grant_type``); which code NetSuite gives for
  which fault, and its descriptions, are UNCONFIRMED. A reused ``jti`` is NOT refused: Oracle
  names no ``jti`` claim for the assertion. Access tokens already issued stay valid after
  :meth:`revoke_certificate` (UNCONFIRMED).
- Unknown body fields are refused unless ``X-NetSuite-PropertyNameValidation`` is
  ``Warning`` or ``Ignore`` (NetSuite's default is UNCONFIRMED). A ``line`` that is not on
  the invoice is refused (NetSuite documents unmatched keyed lines as added). A body
  ``externalId`` other than the URL's is refused. ``PUT`` with an internal ID is 405.
- An invoice with a payment applied (:meth:`pay`) cannot be deleted ("This record cannot be
  deleted because it has dependent records.": a paid invoice cannot be deleted, per
  third-party guides; the REST wording is UNCONFIRMED) and, stricter than anything
  documented, cannot be changed by PUT or PATCH either.
- Fault 500 answers ``UNEXPECTED_ERROR``; ``hang`` answers 500 after ``hang_seconds``. The
  status field ``{"id": "A"|"B", "refName": "Open"|"Paid In Full"}`` is the fake's shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import jwt
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.processes import free_port, serve_in_thread, stop_server

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
RECORD_PATH = "/services/rest/record/v1"
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
SCOPES = ("restlets", "rest_webservices", "suite_analytics")
MAX_ASSERTION_SECONDS = 3600
TBA_SIGNATURE_METHOD = "HMAC-SHA256"
TBA_REQUIRED = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_signature",
)
FAULT_KINDS = ("500", "429", "hang", "apply_then_hang", "401")
ENDPOINTS = ("token", "get", "upsert", "patch", "delete")
INVALID_LOGIN = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)
RESOURCE_JSON = "application/vnd.oracle.resource+json; type=singular"
LINE_FIELDS = {"line", "item", "quantity", "rate", "amount", "description"}
BODY_FIELDS = {"entity", "subsidiary", "currency", "tranDate", "dueDate", "externalId", "memo"}
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]+")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CENT = Decimal("0.01")
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_SECTIONS = {400: "15.5.1", 401: "15.5.2", 404: "15.5.5", 405: "15.5.6", 500: "15.6.1"}

Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


@dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    endpoint: str | None = None  # one of ENDPOINTS; None: the next call, whatever it is


@dataclass
class Call:
    method: str
    path: str
    endpoint: str  # "token", "get", "upsert", "patch" or "delete"
    query: dict[str, str]
    body: Any  # the JSON body (record API) or the form (token endpoint), decoded
    at: float  # time.monotonic() when the request arrived
    auth: str | None = None  # "bearer" or "tba" once authenticated
    status: int = 0
    ended: float | None = None  # time.monotonic() when the answer was sent


@dataclass
class TokenRequest:
    """One ``POST`` to the token endpoint, with what the assertion said (unverified)."""

    at: float
    header: dict[str, Any]
    claims: dict[str, Any]
    status: int = 0
    error: str | None = None
    description: str | None = None


@dataclass
class AuditEntry:
    """A row of the Login Audit Trail: ``detail`` is NetSuite's reason (``InvalidSignature``,
    ``NonceUsed``, ``AccessTokenExpired`` …) or ``Success``."""

    at: float
    via: str  # "m2m", "bearer" or "tba"
    detail: str


@dataclass
class _Certificate:
    client_id: str
    key: Any  # a cryptography public key
    revoked: bool = False


@dataclass
class _AccessToken:
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float  # time.time()


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class FakeNetSuite:
    account_id: str = "1234567"
    concurrency_limit: int = 5
    access_token_seconds: int = 3600
    timestamp_window_seconds: float = 300.0
    hang_seconds: float = 5.0
    latency: float = 0.0  # seconds every record call takes, in flight (see the docstring)
    calls: list[Call] = field(default_factory=list)
    token_requests: list[TokenRequest] = field(default_factory=list)
    audit_trail: list[AuditEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._ids = itertools.count(101)
        self._certificates: dict[str, _Certificate] = {}
        self._tba: dict[str, tuple[str, str, str]] = {}  # token id → (ck, cs, token secret)
        self._consumers: set[str] = set()
        self._nonces: dict[tuple[str, str, str], float] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._signing_key = secrets.token_bytes(32)
        self._customers: dict[str, dict[str, Any]] = {}
        self._subsidiaries: dict[str, str] = {}
        self._items: dict[str, dict[str, Any]] = {}
        self._currencies: dict[str, str] = {"1": "USD", "2": "GBP", "3": "CAD", "4": "EUR"}
        self._invoices: dict[str, dict[str, Any]] = {}
        self._in_flight = 0
        self._peak = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None

    # --- the tests' side -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, in place of ``https://{account}.suitetalk.api.netsuite.com``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """The token endpoint: the ``aud`` an assertion must name."""
        return f"{self.url}{TOKEN_PATH}"

    @property
    def realm(self) -> str:
        """The account ID as TBA's ``realm`` must give it: ``123456_SB1``."""
        return self.account_id.upper().replace("-", "_")

    def start(self) -> FakeNetSuite:
        app = Starlette(
            routes=[
                Route(TOKEN_PATH, self._token, methods=["POST"]),
                Route(
                    f"{RECORD_PATH}/invoice/{{key}}",
                    self._record,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
            ],
            exception_handlers={404: self._unrecognised, 405: self._unrecognised},
        )
        self._server = serve_in_thread(app, self.port)
        return self

    def stop(self) -> None:
        stop_server(self._server)

    def register_certificate(
        self, client_id: str, certificate_id: str, public_key_pem: str | bytes
    ) -> None:
        """Map a certificate (or a bare public key, PEM) to an integration's client ID, as the
        OAuth 2.0 Client Credentials Setup page does; ``certificate_id`` is the ``kid``."""
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        key: Any
        if b"BEGIN CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
        with self._lock:
            self._certificates[certificate_id] = _Certificate(client_id, key)

    def revoke_certificate(self, certificate_id: str) -> None:
        with self._lock:
            self._certificates[certificate_id].revoked = True

    def register_tba(
        self, consumer_key: str, consumer_secret: str, token_id: str, token_secret: str
    ) -> None:
        """An integration record (consumer key and secret) and an access token for it."""
        with self._lock:
            self._consumers.add(consumer_key)
            self._tba[token_id] = (consumer_key, consumer_secret, token_secret)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now past its 60 minutes."""
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = 0.0

    def customer(
        self, name: str = "Customer", *, subsidiary: str | None = None, currency: str = "1"
    ) -> str:
        with self._lock:
            customer_id = str(next(self._ids))
            self._customers[customer_id] = {
                "name": name,
                "subsidiary": subsidiary,
                "currency": currency,
            }
            return customer_id

    def subsidiary(self, name: str = "Parent Company") -> str:
        with self._lock:
            subsidiary_id = str(next(self._ids))
            self._subsidiaries[subsidiary_id] = name
            return subsidiary_id

    def item(self, name: str = "Usage", *, rate: str = "0") -> str:
        """A service item; ``rate`` is its base price, used when a line gives neither rate
        nor amount."""
        with self._lock:
            item_id = str(next(self._ids))
            self._items[item_id] = {"name": name, "rate": Decimal(rate)}
            return item_id

    def currency(self, symbol: str) -> str:
        """The internal ID of a currency, added if new (USD is 1, GBP 2, CAD 3, EUR 4)."""
        with self._lock:
            for currency_id, known in self._currencies.items():
                if known == symbol:
                    return currency_id
            currency_id = str(next(self._ids))
            self._currencies[currency_id] = symbol
            return currency_id

    def pay(self, invoice_id: str, amount: str | None = None) -> None:
        """A customer payment of ``amount`` (default: what remains) applied to the invoice."""
        with self._lock:
            invoice = self._invoices[invoice_id]
            paid = Decimal(amount) if amount is not None else _remaining(invoice)
            invoice["payments"].append(paid)
            invoice["lastModifiedDate"] = _now()

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice as ``GET …?expandSubResources=true`` would answer it."""
        with self._lock:
            return [self._render(inv, expand=True) for inv in self._invoices.values()]

    def invoice(self, invoice_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._invoices.get(invoice_id)
            return self._render(found, expand=True) if found else None

    def invoice_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._by_external_id(external_id)
            return self._render(found, expand=True) if found else None

    def fail_next(self, count: int, kind: str, *, endpoint: str | None = None) -> None:
        """The next ``count`` calls (to ``endpoint``: "token", "get", "upsert", "patch" or
        "delete", if given) fail: ``500``; ``429`` (as over the concurrency limit); ``401``
        (INVALID_LOGIN, nothing done); ``hang`` (no answer for ``hang_seconds``, nothing
        done); ``apply_then_hang`` (done, then no answer for ``hang_seconds``)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        with self._lock:
            self._faults.extend(Fault(kind, endpoint) for _ in range(count))

    def in_flight(self) -> int:
        """Record API requests being served now (a hanging one counts until it answers)."""
        with self._lock:
            return self._in_flight

    def max_concurrent(self) -> int:
        """The most record API requests that were in flight at once."""
        with self._lock:
            return self._peak

    def applied(self, endpoint: str) -> list[Call]:
        """Calls to ``endpoint`` that changed something (a 2xx outcome, even if the answer
        was then lost to ``apply_then_hang``)."""
        with self._lock:
            return [c for c in self.calls if c.endpoint == endpoint and 200 <= c.status < 300]

    # --- the token endpoint ----------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        raw = (await request.body()).decode(errors="replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        call = Call(request.method, request.url.path, "token", {}, form, time.monotonic())
        record = TokenRequest(call.at, {}, {})
        with self._lock:
            self.calls.append(call)
            self.token_requests.append(record)
        fault = self._next_fault("token")
        if fault is not None and fault.kind != "apply_then_hang":
            return await self._fault_answer(call, fault.kind)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            with self._lock:
                body = self._grant(content_type, form, record)
            status = 200
        except _Refused as refused:
            status, body = refused.status, refused.body
            record.error = body.get("error")
            record.description = body.get("error_description")
            with self._lock:
                self.audit_trail.append(AuditEntry(call.at, "m2m", str(record.description)))
        record.status = status
        if fault is not None:  # apply_then_hang
            await asyncio.sleep(self.hang_seconds)
        return self._answer(call, status, body, {"Cache-Control": "no-store"})

    def _grant(
        self, content_type: str, form: dict[str, str], record: TokenRequest
    ) -> dict[str, Any]:
        if content_type != "application/x-www-form-urlencoded":
            raise _oauth_error("invalid_request", "the body must be form-urlencoded")
        if form.get("grant_type") != GRANT_TYPE:
            raise _oauth_error("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _oauth_error("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            record.header = header
            record.claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _oauth_error("invalid_request", f"client_assertion is not a JWT: {exc}") from exc
        if header.get("typ") != "JWT":
            raise _oauth_error("invalid_request", "the JWT header's typ must be JWT")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _oauth_error(
                "invalid_request", f"alg {alg!r} is not one of {', '.join(ALGORITHMS)}"
            )
        kid = header.get("kid")
        certificate = self._certificates.get(kid) if isinstance(kid, str) else None
        if certificate is None:
            raise _oauth_error("invalid_client", f"no certificate with ID {kid!r} is mapped")
        if certificate.revoked:
            raise _oauth_error("invalid_client", f"certificate {kid} is revoked")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                certificate.key,
                algorithms=[alg],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _oauth_error("invalid_client", f"InvalidSignature: {exc}") from exc
        if claims.get("iss") != certificate.client_id:
            raise _oauth_error(
                "invalid_client", f"iss must be the client ID certificate {kid} is mapped to"
            )
        audience = claims.get("aud")
        if not (
            audience == self.token_url
            or (isinstance(audience, list) and self.token_url in audience)
        ):
            raise _oauth_error("invalid_grant", f"aud must be {self.token_url}")
        if not _number(claims.get("iat")) or not _number(claims.get("exp")):
            raise _oauth_error("invalid_grant", "iat and exp must be numbers of seconds")
        iat, exp = float(claims["iat"]), float(claims["exp"])
        if exp <= time.time():
            raise _oauth_error("invalid_grant", "the assertion has expired (exp)")
        if exp - iat > MAX_ASSERTION_SECONDS:
            raise _oauth_error("invalid_grant", "exp must be at most 60 minutes after iat")
        scopes = _scopes(claims.get("scope"))
        if scopes is None:
            raise _oauth_error(
                "invalid_scope",
                "scope must be restlets, rest_webservices or suite_analytics (comma-separated"
                " or a list), or mcp alone",
            )
        issued = time.time()
        access_token = jwt.encode(
            {
                "sub": f"3;{certificate.client_id[:8]}",
                "aud": [certificate.client_id, f"app:{self.realm}"],
                "scope": list(scopes),
                "iss": "https://system.netsuite.com",
                "exp": int(issued) + self.access_token_seconds,
                "iat": int(issued),
                "jti": f"{self.realm}.a.{secrets.token_hex(16)}",
            },
            self._signing_key,
            algorithm="HS256",
            headers={"kid": f"s.{self.realm}.fake"},
        )
        self._access_tokens[access_token] = _AccessToken(
            certificate.client_id, scopes, issued + self.access_token_seconds
        )
        self.audit_trail.append(AuditEntry(record.at, "m2m", "Success"))
        return {
            "access_token": access_token,
            "expires_in": str(self.access_token_seconds),
            "token_type": "bearer",
        }

    # --- the record API --------------------------------------------------------------

    async def _record(self, request: Request) -> Response:
        endpoint = {"GET": "get", "PUT": "upsert", "PATCH": "patch", "DELETE": "delete"}[
            request.method
        ]
        raw = await request.body()
        query = dict(request.query_params)
        call = Call(request.method, request.url.path, endpoint, query, None, time.monotonic())
        with self._lock:
            self.calls.append(call)
            if self._in_flight >= self.concurrency_limit:
                return self._answer(call, *_concurrency_refusal())
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return await self._serve(request, call, raw)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _serve(self, request: Request, call: Call, raw: bytes) -> Response:
        try:
            with self._lock:
                call.auth = self._authenticate(request, raw)
        except _Refused as refused:
            return self._answer(call, refused.status, refused.body, refused.headers)
        fault = self._next_fault(call.endpoint)
        if fault is not None and fault.kind != "apply_then_hang":
            return await self._fault_answer(call, fault.kind)
        try:
            body = self._json(raw) if call.endpoint in ("upsert", "patch") else None
            call.body = body
            strict = request.headers.get("x-netsuite-propertynamevalidation", "error").lower()
            with self._lock:
                handler = getattr(self, f"_{call.endpoint}")
                status, payload, headers = handler(
                    request.path_params["key"], body, call.query, strict == "error"
                )
        except _Refused as refused:
            status, payload, headers = refused.status, refused.body, refused.headers
        call.status = status  # done now, even if the answer is then lost
        if fault is not None:  # apply_then_hang
            await asyncio.sleep(self.hang_seconds)
        return self._answer(call, status, payload, headers)

    def _authenticate(self, request: Request, raw: bytes) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        now = time.monotonic()
        if scheme.lower() == "bearer" and credentials.strip():
            token = self._access_tokens.get(credentials.strip())
            reason = None
            if token is None:
                reason = "InvalidToken"
            elif token.expires_at <= time.time():
                reason = "AccessTokenExpired"
            elif "rest_webservices" not in token.scopes:
                reason = "ScopeMismatched"
            if reason is not None:
                self.audit_trail.append(AuditEntry(now, "bearer", reason))
                raise self._login_refused(bearer=True)
            self.audit_trail.append(AuditEntry(now, "bearer", "Success"))
            return "bearer"
        if scheme == "OAuth":
            reason = self._tba_refusal(request, header, raw)
            self.audit_trail.append(AuditEntry(now, "tba", reason or "Success"))
            if reason is not None:
                raise self._login_refused(bearer=False)
            return "tba"
        self.audit_trail.append(AuditEntry(now, "none", "MissingAuthorization"))
        raise self._login_refused(bearer=True)

    def _tba_refusal(self, request: Request, header: str, raw: bytes) -> str | None:
        """Why NetSuite would refuse this TBA header (its Login Audit Trail detail), or None."""
        try:
            params = {
                name: oauth_utils.unescape(value)
                for name, value in oauth_utils.parse_authorization_header(header)
            }
        except (ValueError, IndexError):
            return "MissingTokenPassportRequiredFields"
        if any(not params.get(name) for name in TBA_REQUIRED):
            return "MissingTokenPassportRequiredFields"
        if params.get("oauth_version", "1.0") != "1.0":
            return "InvalidVersion"
        if params["oauth_signature_method"] != TBA_SIGNATURE_METHOD:
            return "InvalidSignatureMethod"
        if params.get("realm") != self.realm:
            return "InvalidAccount"
        try:
            stamp = int(params["oauth_timestamp"])
        except ValueError:
            return "InvalidTimestamp"
        if abs(time.time() - stamp) > self.timestamp_window_seconds:
            return "InvalidTimestamp"
        if len(params["oauth_nonce"]) < 6:
            return "nonce_rejected"
        consumer_key, token_id = params["oauth_consumer_key"], params["oauth_token"]
        if consumer_key not in self._consumers:
            return "consumer_key_unknown"
        registered = self._tba.get(token_id)
        if registered is None or registered[0] != consumer_key:
            return "InvalidToken"
        _, consumer_secret, token_secret = registered
        form = None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            form = raw.decode(errors="replace")
        oauth_request = OAuthRequest(str(request.url), request.method, form, {})
        oauth_request.params = oauth_signature.collect_parameters(
            uri_query=request.url.query, body=form, headers={"Authorization": header}
        )
        oauth_request.signature = params["oauth_signature"]
        if not oauth_signature.verify_hmac_sha256(oauth_request, consumer_secret, token_secret):
            return "InvalidSignature"
        used = (token_id, params["oauth_nonce"], params["oauth_timestamp"])
        cutoff = time.time() - 2 * self.timestamp_window_seconds
        for old in [key for key, at in self._nonces.items() if at < cutoff]:
            del self._nonces[old]
        if used in self._nonces:
            return "NonceUsed"
        self._nonces[used] = time.time()
        return None

    def _login_refused(self, *, bearer: bool) -> _Refused:
        headers = {}
        if bearer:
            headers["WWW-Authenticate"] = (
                f'Bearer realm="{self.realm}", error="invalid_token", '
                'error_description="Invalid login attempt."'
            )
        return _Refused(401, _error(401, INVALID_LOGIN, "INVALID_LOGIN"), headers)

    # --- the record operations (run under the lock; raise _Refused for an error) -----

    def _get(self, key: str, _body: Any, query: dict[str, str], _strict: bool) -> Answer:
        invoice = self._find(key)
        expand = query.get("expandSubResources", "false").lower() == "true"
        return 200, self._render(invoice, expand=expand), {"Content-Type": RESOURCE_JSON}

    def _upsert(self, key: str, body: Any, query: dict[str, str], strict: bool) -> Answer:
        if not key.startswith("eid:"):
            raise _Refused(
                405,
                _error(
                    405,
                    "The upsert operation (PUT) takes an external ID in the URL: "
                    "invoice/eid:{externalId} (fake wording).",
                    "INVALID_REQUEST",
                    url_path=f"{RECORD_PATH}/invoice/{key}",
                ),
            )
        external_id = self._external_id(key)
        body = _object(body)
        if "externalId" in body and body["externalId"] != external_id:
            raise _user_error(
                "externalId in the body must be the URL's external ID (fake: stricter than "
                "documented)",
                "externalId",
            )
        existing = self._by_external_id(external_id)
        if existing is not None:
            self._refuse_if_paid(existing, "edit")
            self._update(existing, body, _replaced(query), strict)
            invoice = existing
        else:
            invoice = self._create(external_id, body, _replaced(query), strict)
        return 204, None, {"Location": self._location(invoice)}

    def _patch(self, key: str, body: Any, query: dict[str, str], strict: bool) -> Answer:
        invoice = self._find(key)
        self._refuse_if_paid(invoice, "edit")
        self._update(invoice, _object(body), _replaced(query), strict)
        return 204, None, {"Location": self._location(invoice)}

    def _delete(self, key: str, _body: Any, _query: dict[str, str], _strict: bool) -> Answer:
        invoice = self._find(key)
        self._refuse_if_paid(invoice, "delete")
        del self._invoices[invoice["id"]]
        return 204, None, {}

    def _create(
        self, external_id: str, body: dict[str, Any], replace: set[str], strict: bool
    ) -> dict[str, Any]:
        fields = self._body_fields(body, strict)
        for name, label in (("entity", "Customer"), ("subsidiary", "Subsidiary")):
            if name not in fields:
                raise _user_error(f"Please enter value(s) for: {label}.", name)
        lines = self._lines([], body.get("item"), replace)
        if not lines:
            raise _user_error("You must enter at least one line item for this transaction.", "item")
        invoice_id = str(next(self._ids))
        now = _now()
        customer = self._customers[fields["entity"]]
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "externalId": external_id,
            "tranId": f"INV{invoice_id}",
            "currency": customer["currency"],
            "tranDate": date.today().isoformat(),
            "dueDate": None,
            "memo": None,
            "createdDate": now,
            "lastModifiedDate": now,
            "payments": [],
            **fields,
            "lines": lines,
        }
        self._invoices[invoice_id] = invoice
        return invoice

    def _update(
        self, invoice: dict[str, Any], body: dict[str, Any], replace: set[str], strict: bool
    ) -> None:
        fields = self._body_fields(body, strict)
        other = self._by_external_id(fields.get("externalId", invoice["externalId"]))
        if other is not None and other is not invoice:
            raise _user_error("This record already exists (fake wording).", "externalId")
        lines = invoice["lines"]
        if "item" in body or "item" in replace:
            lines = self._lines(invoice["lines"], body.get("item"), replace)
            if not lines:
                raise _user_error(
                    "You must enter at least one line item for this transaction.", "item"
                )
        invoice.update(fields)
        invoice["lines"] = lines
        invoice["lastModifiedDate"] = _now()

    def _body_fields(self, body: dict[str, Any], strict: bool) -> dict[str, Any]:
        """The body fields given, checked; unknown names refused when ``strict``."""
        unknown = sorted(set(body) - BODY_FIELDS - {"item"})
        if unknown and strict:
            raise _Refused(
                400,
                {
                    **_error(400, "", "INVALID_CONTENT"),
                    "o:errorDetails": [
                        {
                            "detail": f"Invalid field name: {name} (fake wording).",
                            "o:errorCode": "INVALID_CONTENT",
                            "o:errorPath": name,
                        }
                        for name in unknown
                    ],
                },
            )
        fields: dict[str, Any] = {}
        for name, table in (
            ("entity", self._customers),
            ("subsidiary", self._subsidiaries),
            ("currency", self._currencies),
        ):
            if name in body:
                fields[name] = _reference(body[name], table, name)
        for name in ("tranDate", "dueDate"):
            if name in body:
                value = body[name]
                if value is not None and not (isinstance(value, str) and _is_date(value)):
                    raise _user_error(
                        f"Invalid date value {value!r} for field {name}: use YYYY-MM-DD.", name
                    )
                fields[name] = value
        if "externalId" in body:
            value = body["externalId"]
            if not (isinstance(value, str) and EXTERNAL_ID.fullmatch(value)):
                raise _user_error(
                    f"Invalid external ID {value!r}: only letters, digits, _ and - (fake wording).",
                    "externalId",
                )
            fields["externalId"] = value
        if "memo" in body:
            if body["memo"] is not None and not isinstance(body["memo"], str):
                raise _user_error("memo must be a string.", "memo")
            fields["memo"] = body["memo"]
        return fields

    def _lines(
        self, current: list[dict[str, Any]], sublist: Any, replace: set[str]
    ) -> list[dict[str, Any]]:
        """The item sublist after a write: keyed by ``line`` (see the module docstring)."""
        if sublist is None:
            sublist = {"items": []}
        if not isinstance(sublist, dict) or not isinstance(sublist.get("items"), list):
            raise _user_error('item must be an object: {"items": [...]}.', "item")
        by_line = {line["line"]: line for line in current}
        kept: dict[int, dict[str, Any]] = {} if "item" in replace else dict(by_line)
        added: list[dict[str, Any]] = []
        next_line = max(by_line, default=0) + 1
        for index, given in enumerate(sublist["items"]):
            where = f"item.items[{index}]"
            if not isinstance(given, dict):
                raise _user_error("A line must be an object.", where)
            unknown = sorted(set(given) - LINE_FIELDS)
            if unknown:
                raise _user_error(f"Invalid field name: {unknown[0]} (fake wording).", where)
            if "line" in given:
                number = given["line"]
                if not _whole(number) or number not in by_line:
                    raise _user_error(
                        f"Line {number!r} is not on this invoice (fake: stricter than documented).",
                        where,
                    )
                kept[number] = self._line(by_line[number], given, where)
            else:
                line = self._line(None, given, where)
                line["line"] = next_line
                next_line += 1
                added.append(line)
        return sorted(kept.values(), key=lambda line: int(line["line"])) + added

    def _line(
        self, current: dict[str, Any] | None, given: dict[str, Any], where: str
    ) -> dict[str, Any]:
        line: dict[str, Any] = dict(current) if current else {"description": None}
        if "item" in given:
            line["item"] = _reference(given["item"], self._items, where)
        elif current is None:
            raise _user_error("Please enter value(s) for: Item.", where)
        for name in ("quantity", "rate", "amount"):
            if name in given:
                value = given[name]
                if not _number(value):
                    raise _user_error(f"{name} must be a number.", where)
                line[name] = Decimal(str(value))
        if "description" in given:
            if given["description"] is not None and not isinstance(given["description"], str):
                raise _user_error("description must be a string.", where)
            line["description"] = given["description"]
        quantity = line.setdefault("quantity", Decimal(1))
        if "amount" in given and "rate" not in given:
            if quantity == 0:
                raise _user_error("quantity must not be 0 when only amount is given.", where)
            line["rate"] = line["amount"] / quantity
        elif "amount" not in given:
            rate = line.get("rate")
            if rate is None:
                rate = line["rate"] = self._items[line["item"]]["rate"]
            line["amount"] = (quantity * rate).quantize(CENT, ROUND_HALF_UP)
        line["amount"] = line["amount"].quantize(CENT, ROUND_HALF_UP)
        return line

    def _refuse_if_paid(self, invoice: dict[str, Any], what: str) -> None:
        if not invoice["payments"]:
            return
        if what == "delete":
            raise _user_error("This record cannot be deleted because it has dependent records.")
        raise _user_error(
            "This invoice has payments applied and cannot be changed (fake: stricter than "
            "documented)."
        )

    # --- helpers ---------------------------------------------------------------------

    def _find(self, key: str) -> dict[str, Any]:
        if key.startswith("eid:"):
            invoice = self._by_external_id(self._external_id(key))
        elif key.isdigit():
            invoice = self._invoices.get(key)
        else:
            raise _Refused(
                400,
                _error(
                    400,
                    f"Invalid record instance identifier '{key}'. Provide a valid record "
                    "instance ID.",
                    "INVALID_ID",
                    url_path=f"{RECORD_PATH}/invoice/{key}",
                ),
            )
        if invoice is None:
            raise _Refused(
                404,
                _error(
                    404,
                    "The record instance does not exist. Provide a valid record instance ID.",
                    "NONEXISTENT_ID",
                    url_path=f"{RECORD_PATH}/invoice/{key}",
                ),
            )
        return invoice

    def _external_id(self, key: str) -> str:
        external_id = key[len("eid:") :]
        if not EXTERNAL_ID.fullmatch(external_id):
            raise _Refused(
                400,
                _error(
                    400,
                    f"Invalid external ID {external_id!r}: only letters, digits, _ and - "
                    "(fake wording).",
                    "INVALID_ID",
                    url_path=f"{RECORD_PATH}/invoice/{key}",
                ),
            )
        return external_id

    def _by_external_id(self, external_id: str) -> dict[str, Any] | None:
        for invoice in self._invoices.values():
            if invoice["externalId"] == external_id:
                return invoice
        return None

    def _location(self, invoice: dict[str, Any]) -> str:
        return f"{self.url}{RECORD_PATH}/invoice/{invoice['id']}"

    def _link(self, path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{self.url}{RECORD_PATH}/{path}"}]

    def _ref(self, kind: str, ref_id: str | None, name: str | None) -> dict[str, Any] | None:
        if ref_id is None:
            return None
        return {"links": self._link(f"{kind}/{ref_id}"), "id": ref_id, "refName": name}

    def _render(self, invoice: dict[str, Any], *, expand: bool) -> dict[str, Any]:
        total = sum((line["amount"] for line in invoice["lines"]), Decimal(0))
        paid = sum(invoice["payments"], Decimal(0))
        remaining = total - paid
        open_ = remaining > 0 or not invoice["payments"]
        base = f"invoice/{invoice['id']}"
        item: dict[str, Any] = {"links": self._link(f"{base}/item")}
        if expand:
            item["items"] = [
                {
                    "links": self._link(f"{base}/item/{line['line']}"),
                    "line": line["line"],
                    "item": self._ref(
                        "serviceItem", line["item"], self._items[line["item"]]["name"]
                    ),
                    "quantity": float(line["quantity"]),
                    "rate": float(line["rate"]),
                    "amount": float(line["amount"]),
                    "description": line["description"],
                }
                for line in invoice["lines"]
            ]
            item["totalResults"] = len(invoice["lines"])
        customer = self._customers[invoice["entity"]]
        rendered = {
            "links": self._link(base),
            "id": invoice["id"],
            "externalId": invoice["externalId"],
            "tranId": invoice["tranId"],
            "entity": self._ref("customer", invoice["entity"], customer["name"]),
            "subsidiary": self._ref(
                "subsidiary", invoice["subsidiary"], self._subsidiaries[invoice["subsidiary"]]
            ),
            "currency": self._ref(
                "currency", invoice["currency"], self._currencies.get(invoice["currency"])
            ),
            "tranDate": invoice["tranDate"],
            "dueDate": invoice["dueDate"],
            "memo": invoice["memo"],
            "subtotal": float(total),
            "total": float(total),
            "amountPaid": float(paid),
            "amountRemaining": float(remaining),
            "status": {"id": "A", "refName": "Open"}
            if open_
            else {"id": "B", "refName": "Paid In Full"},
            "createdDate": invoice["createdDate"],
            "lastModifiedDate": invoice["lastModifiedDate"],
            "item": item,
        }
        return {name: value for name, value in rendered.items() if value is not None}

    def _json(self, raw: bytes) -> Any:
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            raise _Refused(
                400,
                _error(
                    400,
                    f"Invalid JSON in the request body: {exc} (fake wording).",
                    "INVALID_CONTENT",
                ),
            ) from exc

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    self._faults.remove(fault)
                    return fault
            return None

    async def _fault_answer(self, call: Call, kind: str) -> Response:
        if kind == "429":
            return self._answer(call, *_concurrency_refusal())
        if kind == "401":
            refused = self._login_refused(bearer=call.endpoint != "token")
            return self._answer(call, refused.status, refused.body, refused.headers)
        if kind == "hang":
            await asyncio.sleep(self.hang_seconds)
        detail = "An unexpected error occurred. Error ID: fake" + secrets.token_hex(4)
        return self._answer(call, 500, _error(500, detail, "UNEXPECTED_ERROR"), {})

    async def _unrecognised(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        detail = (
            f"The fake serves only the invoice record and the token endpoint, not "
            f"{request.method} {request.url.path} (fake wording)."
        )
        code = "NONEXISTENT_ID" if status == 404 else "INVALID_REQUEST"
        return JSONResponse(_error(status, detail, code), status_code=status)

    def _answer(
        self,
        call: Call,
        status: int,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        call.status = status
        call.ended = time.monotonic()
        headers = dict(headers or {})
        if body is None:
            return Response(status_code=status, headers=headers)
        media_type = headers.pop("Content-Type", "application/json")
        if status >= 400 and call.endpoint != "token":
            media_type = "application/vnd.oracle.resource+json; type=error"
        return JSONResponse(body, status_code=status, headers=headers, media_type=media_type)


def _error(
    status: int, detail: str, code: str, *, path: str | None = None, url_path: str | None = None
) -> dict[str, Any]:
    """NetSuite's REST error body."""
    entry: dict[str, Any] = {"detail": detail, "o:errorCode": code}
    if path is not None:
        entry["o:errorPath"] = path
    if url_path is not None:
        entry["o:errorUrl"] = url_path
    section = _SECTIONS.get(status)
    kind = (
        f"https://www.rfc-editor.org/rfc/rfc9110.html#section-{section}"
        if section
        else "https://www.rfc-editor.org/rfc/rfc6585.html#section-4"
    )
    return {
        "type": kind,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "o:errorDetails": [entry],
    }


def _user_error(message: str, path: str | None = None) -> _Refused:
    return _Refused(
        400, _error(400, f"Error while accessing a resource. {message}", "USER_ERROR", path=path)
    )


def _concurrency_refusal() -> tuple[int, dict[str, Any], dict[str, str]]:
    body = _error(
        429, "Concurrent request limit exceeded. Request blocked.", "CONCURRENCY_LIMIT_EXCEEDED"
    )
    return 429, body, {}


def _oauth_error(code: str, description: str) -> _Refused:
    return _Refused(400, {"error": code, "error_description": description})


def _reference(value: Any, table: dict[str, Any], where: str) -> str:
    ref_id = value.get("id") if isinstance(value, dict) else None
    if isinstance(ref_id, int) and not isinstance(ref_id, bool):
        ref_id = str(ref_id)
    if not isinstance(ref_id, str) or ref_id not in table:
        shown = ref_id if ref_id is not None else value
        field_name = where.split(".")[0]
        raise _user_error(
            f"You have entered an Invalid Field Value {shown} for the following field: "
            f"{field_name}",
            where,
        )
    return ref_id


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _user_error("The request body must be a JSON object.")
    return body


def _replaced(query: dict[str, str]) -> set[str]:
    return {name.strip() for name in query.get("replace", "").split(",") if name.strip()}


def _scopes(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        names = [name.strip() for name in value.split(",")]
    elif isinstance(value, list) and all(isinstance(name, str) for name in value):
        names = [name.strip() for name in value]
    else:
        return None
    if names == ["mcp"]:
        return ("mcp",)
    if not names or any(name not in SCOPES for name in names):
        return None
    return tuple(dict.fromkeys(names))


def _remaining(invoice: dict[str, Any]) -> Decimal:
    total = sum((line["amount"] for line in invoice["lines"]), Decimal(0))
    return Decimal(total - sum(invoice["payments"], Decimal(0)))


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        try:
            return Decimal(str(value)).is_finite()
        except InvalidOperation:
            return False
    return False


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_date(value: str) -> bool:
    if not DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- what the tests share --------------------------------------------------------------

CLIENT_ID = "4c063b0929d45ccf25e820e26f6b981f10f6e57960f07c4baa33c69f6fad12d6"
CONSUMER_KEY, CONSUMER_SECRET = "ck-meterbridge", "cs-meterbridge"
TOKEN_ID, TOKEN_SECRET = "tid-meterbridge", "ts-meterbridge"


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The key's public half, as :meth:`FakeNetSuite.register_certificate` takes it."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """The key as a credential's ``private_key`` holds it (PKCS #8, unencrypted)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Books:
    """Internal IDs of the records an invoice refers to."""

    subsidiary: str
    customer: str  # of the subsidiary
    usage: str  # an item with no base price
    fee: str  # an item with a base price of 250


def open_books(fake: FakeNetSuite) -> Books:
    subsidiary = fake.subsidiary("Meterbridge Ltd")
    return Books(
        subsidiary=subsidiary,
        customer=fake.customer("Acme", subsidiary=subsidiary),
        usage=fake.item("API calls"),
        fee=fake.item("Platform fee", rate="250"),
    )
