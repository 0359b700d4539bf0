"""NetSuite's client and both ways in, against the fake NetSuite: the fake verifies the M2M
JWT (signature, ``kid``, ``iss``, ``aud``, ``scope``, lifetime) and TBA's OAuth 1.0a
signature and realm, as NetSuite does; the credential's tokens are kept in the real
database (``workers.connections.access``), as in a run."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from domain.db import transaction
from domain.destinations.netsuite import NetSuiteCredential
from domain.errors import TransientError
from domain.integrations.credentials import Credential, CredentialStatus, create_credential
from domain.integrations.errors import AuthenticationFailed, PerformFailed
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from domain.settings import Settings
from tests.support.environment import Environment
from tests.support.fake_netsuite import (
    CLIENT_ID,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN_ID,
    TOKEN_SECRET,
    Books,
    FakeNetSuite,
    open_books,
    private_pem,
    public_pem,
)
from workers.connections.http import AuthorizedClient, Authorizer
from workers.connections.oauth2 import TokenRefused
from workers.destinations.netsuite.client import NetSuiteClient
from workers.destinations.netsuite.connect import ASSERTION_SECONDS, TbaAuthorizer, authorizer
from workers.destinations.turns import RemoteLimited

ACCOUNT = "1234567_SB1"
_bills = itertools.count(1)


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture(scope="module")
def fake(keys: Keys) -> Iterator[FakeNetSuite]:
    """A sandbox account: its host form (1234567-sb1) and realm (1234567_SB1) differ."""
    server = FakeNetSuite(account_id=ACCOUNT, hang_seconds=1.0).start()
    server.register_certificate(CLIENT_ID, "cert-ps", public_pem(keys.rsa))
    server.register_certificate(CLIENT_ID, "cert-es", public_pem(keys.ec))
    server.register_tba(CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def books(fake: FakeNetSuite) -> Books:
    return open_books(fake)


@pytest.fixture
def settings(shared_env: Environment, fake: FakeNetSuite) -> Settings:
    return shared_env.settings.model_copy(
        update={"netsuite_url_template": fake.url, "http_timeout_seconds": 0.5}
    )


@pytest.fixture
def bill_id() -> str:
    return f"bill_NS{next(_bills):04d}"


def m2m_fields(keys: Keys, **fields: Any) -> dict[str, Any]:
    return {
        "auth": "m2m",
        "account_id": "1234567_sb1",  # as a person may type it: the realm is made from it
        "client_id": CLIENT_ID,
        "certificate_id": "cert-ps",
        "private_key": private_pem(keys.rsa),
        **fields,
    }


TBA_FIELDS = {
    "auth": "tba",
    "account_id": "1234567-sb1",
    "consumer_key": CONSUMER_KEY,
    "consumer_secret": CONSUMER_SECRET,
    "token_id": TOKEN_ID,
    "token_secret": TOKEN_SECRET,
}


@dataclass
class Connected:
    client: NetSuiteClient
    http: AuthorizedClient
    credential_id: str


@pytest.fixture
def connect(shared_env: Environment, settings: Settings) -> Iterator[Any]:
    """A stored credential of these fields, and a client that calls with it."""
    opened: list[AuthorizedClient] = []
    box = secret_box(shared_env.settings)

    def make(fields: dict[str, Any], transport: httpx.BaseTransport | None = None) -> Connected:
        with transaction(shared_env.engine) as session:
            credential = create_credential(
                session, box, DEFAULT_ORG_ID, name="ns", destination="netsuite", **fields
            )
            credential_id = credential.id
        checked = NetSuiteCredential.model_validate(fields)
        way_in: Authorizer = authorizer(shared_env.engine, box, settings, credential_id, checked)
        http = AuthorizedClient(
            settings.netsuite_url_template.format(account=checked.host_account),
            way_in,
            settings.http_timeout_seconds,
            title="NetSuite",
            transport=transport,
        )
        opened.append(http)
        return Connected(NetSuiteClient(http), http, credential_id)

    yield make
    for http in opened:
        http.close()


def invoice(books: Books, *lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "entity": {"id": books.customer},
        "subsidiary": {"id": books.subsidiary},
        "tranDate": "2026-11-01",
        "item": {"items": list(lines)},
        **fields,
    }


def usage(books: Books, quantity: float, rate: float) -> dict[str, Any]:
    return {"item": {"id": books.usage}, "quantity": quantity, "rate": rate}


def lines_of(fake: FakeNetSuite, bill_id: str) -> list[tuple[str, float, float, float]]:
    found = fake.invoice_by_external_id(bill_id)
    assert found is not None
    return [
        (line["item"]["id"], line["quantity"], line["rate"], line["amount"])
        for line in found["item"]["items"]
    ]


# --- M2M -----------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "kid"), [("PS256", "cert-ps"), ("ES256", "cert-es")])
def test_m2m_signs_a_jwt_netsuite_accepts_and_upserts_with_its_token(
    connect: Any,
    fake: FakeNetSuite,
    keys: Keys,
    books: Books,
    bill_id: str,
    algorithm: str,
    kid: str,
) -> None:
    key = keys.rsa if algorithm == "PS256" else keys.ec
    ns = connect(
        m2m_fields(keys, algorithm=algorithm, certificate_id=kid, private_key=private_pem(key))
    )
    asked = len(fake.token_requests)

    invoice_id = ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1000, 0.02)))

    [token] = fake.token_requests[asked:]
    assert (token.status, token.error) == (200, None)
    assert token.header == {"alg": algorithm, "kid": kid, "typ": "JWT"}
    claims = token.claims
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        CLIENT_ID,
        fake.token_url,
        ["rest_webservices"],
    )
    assert claims["exp"] - claims["iat"] == ASSERTION_SECONDS <= 3600
    upsert = fake.calls[-1]
    assert (upsert.method, upsert.auth, upsert.query) == ("PUT", "bearer", {"replace": "item"})
    assert upsert.path.endswith(f"/record/v1/invoice/eid:{bill_id}")
    assert fake.invoice_by_external_id(bill_id)["id"] == invoice_id  # type: ignore[index]


def test_a_second_upsert_leaves_one_invoice_holding_the_second_lines_only(
    connect: Any, fake: FakeNetSuite, keys: Keys, books: Books, bill_id: str
) -> None:
    ns = connect(m2m_fields(keys))
    first = ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1000, 0.02)))
    asked = len(fake.token_requests)

    again = ns.client.upsert_invoice(
        bill_id, invoice(books, usage(books, 3000, 0.02), {"item": {"id": books.fee}})
    )

    assert again == first
    assert [i["id"] for i in fake.invoices() if i["externalId"] == bill_id] == [first]
    assert lines_of(fake, bill_id) == [
        (books.usage, 3000.0, 0.02, 60.0),
        (books.fee, 1.0, 250.0, 250.0),
    ]
    assert len(fake.token_requests) == asked  # the stored token was used again
    read = ns.client.invoice(bill_id)
    assert read is not None
    assert (read.id, read.external_id, read.line_count, str(read.total)) == (
        first,
        bill_id,
        2,
        "310.0",
    )
    assert ns.client.invoice(f"{bill_id}_none") is None


def test_an_expired_token_refused_with_a_401_is_renewed_once_and_the_call_sent_again(
    connect: Any, fake: FakeNetSuite, keys: Keys, books: Books, bill_id: str
) -> None:
    ns = connect(m2m_fields(keys))
    ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1, 1)))
    asked = len(fake.token_requests)
    fake.expire_access_tokens()  # NetSuite's hour is up, though the stored expiry is not

    ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 2, 1)))

    assert len(fake.token_requests) - asked == 1
    assert [(c.endpoint, c.status) for c in fake.calls[-3:]] == [
        ("upsert", 401),
        ("token", 200),
        ("upsert", 204),
    ]
    assert [(e.via, e.detail) for e in fake.audit_trail[-3:]] == [
        ("bearer", "AccessTokenExpired"),
        ("m2m", "Success"),
        ("bearer", "Success"),
    ]


def test_a_revoked_certificate_marks_the_credential_for_reconnection(
    connect: Any,
    shared_env: Environment,
    fake: FakeNetSuite,
    keys: Keys,
    books: Books,
    bill_id: str,
) -> None:
    fake.register_certificate(CLIENT_ID, "cert-revoked", public_pem(keys.rsa))
    fake.revoke_certificate("cert-revoked")
    ns = connect(m2m_fields(keys, certificate_id="cert-revoked"))

    with pytest.raises(TokenRefused, match="invalid_client: certificate cert-revoked is revoked"):
        ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1, 1)))

    with transaction(shared_env.engine) as session:
        credential = session.get(Credential, ns.credential_id)
        assert credential is not None
        assert credential.status == CredentialStatus.NEEDS_RECONNECT
    assert fake.invoice_by_external_id(bill_id) is None


# --- TBA -----------------------------------------------------------------------------


def test_tba_signs_each_request_with_the_accounts_realm(
    connect: Any, fake: FakeNetSuite, books: Books, bill_id: str
) -> None:
    ns = connect(TBA_FIELDS)

    invoice_id = ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 10, 0.5)))
    read = ns.client.invoice(bill_id)

    assert read is not None
    assert read.id == invoice_id
    assert [c.auth for c in fake.calls[-2:]] == ["tba", "tba"]
    assert [entry.detail for entry in fake.audit_trail[-2:]] == ["Success", "Success"]
    signer = TbaAuthorizer(NetSuiteCredential.model_validate(TBA_FIELDS))
    header, generation = signer.authorization("GET", f"{fake.url}/x", refused=None)
    assert 'realm="1234567_SB1"' in header  # the account id typed as 1234567-sb1
    assert 'oauth_signature_method="HMAC-SHA256"' in header
    assert generation == signer.authorization("GET", f"{fake.url}/x", refused=generation)[1]


def test_a_spurious_401_is_signed_afresh_once_and_a_second_ends_in_authentication_failed(
    connect: Any, fake: FakeNetSuite, books: Books, bill_id: str
) -> None:
    ns = connect(TBA_FIELDS)
    fake.fail_next(1, "401", endpoint="upsert")

    ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1, 1)))

    assert [c.status for c in fake.calls[-2:]] == [401, 204]
    fake.fail_next(2, "401", endpoint="upsert")
    with pytest.raises(AuthenticationFailed, match=r"refused a fresh access token \(401\) on PUT"):
        ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 2, 1)))
    assert [c.status for c in fake.calls[-2:]] == [401, 401]


def test_tba_with_a_wrong_token_secret_ends_in_authentication_failed(
    connect: Any, fake: FakeNetSuite, books: Books, bill_id: str
) -> None:
    ns = connect({**TBA_FIELDS, "token_secret": "not-the-secret"})

    with pytest.raises(AuthenticationFailed):
        ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1, 1)))

    assert [entry.detail for entry in fake.audit_trail[-2:]] == ["InvalidSignature"] * 2


# --- answers ---------------------------------------------------------------------------


def test_a_refused_write_is_perform_failed_with_netsuites_own_details(
    connect: Any, books: Books, bill_id: str
) -> None:
    ns = connect(TBA_FIELDS)
    body = invoice(books, usage(books, 1, 1), {"item": {"id": "999999"}})

    with pytest.raises(PerformFailed) as raised:
        ns.client.upsert_invoice(bill_id, body)

    assert str(raised.value) == (
        f"NetSuite refused PUT /services/rest/record/v1/invoice/eid:{bill_id}: USER_ERROR: "
        "Error while accessing a resource. You have entered an Invalid Field Value 999999 for "
        "the following field: item (at item.items[1])"
    )


def test_a_missing_subsidiary_is_netsuites_to_say(connect: Any, books: Books, bill_id: str) -> None:
    ns = connect(TBA_FIELDS)
    body = invoice(books, usage(books, 1, 1))
    del body["subsidiary"]

    with pytest.raises(
        PerformFailed, match=r"Please enter value\(s\) for: Subsidiary. \(at subsidiary\)"
    ):
        ns.client.upsert_invoice(bill_id, body)


@pytest.mark.parametrize(
    ("fault", "raised", "message"),
    [
        ("500", TransientError, "NetSuite answered 500 on PUT .*UNEXPECTED_ERROR"),
        ("429", RemoteLimited, "CONCURRENCY_LIMIT_EXCEEDED: Concurrent request limit exceeded"),
        ("hang", TransientError, "did not answer PUT .* in time"),
    ],
)
def test_what_retrying_can_mend_is_transient_or_a_turn(
    connect: Any,
    fake: FakeNetSuite,
    books: Books,
    bill_id: str,
    fault: str,
    raised: type[Exception],
    message: str,
) -> None:
    ns = connect(TBA_FIELDS)
    fake.fail_next(1, fault, endpoint="upsert")

    with pytest.raises(raised, match=message):
        ns.client.upsert_invoice(bill_id, invoice(books, usage(books, 1, 1)))

    assert fake.invoice_by_external_id(bill_id) is None


def test_an_upsert_answered_without_location_is_looked_up_by_external_id(
    connect: Any, fake: FakeNetSuite, bill_id: str
) -> None:
    seen: list[str] = []

    def netsuite(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        if request.method == "PUT":
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "742", "externalId": bill_id, "total": 1.0})

    ns = connect(TBA_FIELDS, transport=httpx.MockTransport(netsuite))

    assert ns.client.upsert_invoice(bill_id, {"item": {"items": []}}) == "742"
    assert seen == [
        f"PUT /services/rest/record/v1/invoice/eid:{bill_id}?replace=item",
        f"GET /services/rest/record/v1/invoice/eid:{bill_id}?expandSubResources=true",
    ]
