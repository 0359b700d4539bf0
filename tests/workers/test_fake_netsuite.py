# mypy: disable-error-code="import-untyped"
"""The fake NetSuite against what NetSuite documents: the M2M token endpoint verified with
real PS256 and ES256 signatures, TBA signed by oauthlib, the invoice record's upsert and
sublist rules, NetSuite's error shape, its concurrency limit and the faults."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from tests.support.fake_netsuite import (
    ASSERTION_TYPE,
    CLIENT_ID,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    INVALID_LOGIN,
    TOKEN_ID,
    TOKEN_SECRET,
    Books,
    FakeNetSuite,
    open_books,
    public_pem,
)
from tests.support.processes import wait_for

_eids = itertools.count(1)


@dataclass
class Keys:
    ps: rsa.RSAPrivateKey  # certificates cert-ps and cert-revoked
    es: ec.EllipticCurvePrivateKey  # certificate cert-es
    other: rsa.RSAPrivateKey  # mapped to no certificate


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def fake(keys: Keys) -> Iterator[FakeNetSuite]:
    server = FakeNetSuite(account_id="1234567", hang_seconds=0.5).start()
    server.register_certificate(CLIENT_ID, "cert-ps", public_pem(keys.ps))
    server.register_certificate(CLIENT_ID, "cert-es", public_pem(keys.es))
    server.register_certificate(CLIENT_ID, "cert-revoked", public_pem(keys.ps))
    server.register_tba(CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def books(fake: FakeNetSuite) -> Books:
    return open_books(fake)


@pytest.fixture
def eid() -> str:
    return f"mb-bill_{next(_eids)}"


def assertion(
    fake: FakeNetSuite,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    alg: str,
    kid: str,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {
        "iss": CLIENT_ID,
        "scope": "rest_webservices",
        "aud": fake.token_url,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def ask_token(fake: FakeNetSuite, client_assertion: str) -> httpx.Response:
    return httpx.post(
        fake.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
    )


@pytest.fixture(scope="module")
def bearer(fake: FakeNetSuite, keys: Keys) -> dict[str, str]:
    answer = ask_token(fake, assertion(fake, keys.ps, "PS256", "cert-ps"))
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def invoice_url(fake: FakeNetSuite, key: str, query: str = "") -> str:
    return f"{fake.url}/services/rest/record/v1/invoice/{key}{query}"


def invoice_body(books: Books, *lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "entity": {"id": books.customer},
        "subsidiary": {"id": books.subsidiary},
        "tranDate": "2026-05-31",
        "item": {"items": list(lines)},
        **fields,
    }


def usage_line(books: Books, quantity: float = 1000, rate: float = 0.02, **more: Any) -> Any:
    return {"item": {"id": books.usage}, "quantity": quantity, "rate": rate, **more}


def put(fake: FakeNetSuite, headers: dict[str, str], eid: str, body: Any, query: str = "") -> Any:
    return httpx.put(invoice_url(fake, f"eid:{eid}", query), json=body, headers=headers)


def lines_of(fake: FakeNetSuite, eid: str) -> list[tuple[int, str, float, float, float]]:
    invoice = fake.invoice_by_external_id(eid)
    assert invoice is not None
    return [
        (line["line"], line["item"]["id"], line["quantity"], line["rate"], line["amount"])
        for line in invoice["item"]["items"]
    ]


def details(answer: httpx.Response) -> list[dict[str, Any]]:
    body = answer.json()
    assert set(body) >= {"type", "title", "status", "o:errorDetails"}, body
    assert body["status"] == answer.status_code
    entries: list[dict[str, Any]] = body["o:errorDetails"]
    return entries


def tba_headers(
    fake: FakeNetSuite,
    method: str,
    url: str,
    body: str | None = None,
    *,
    consumer_secret: str = CONSUMER_SECRET,
    realm: str | None = None,
) -> dict[str, str]:
    client = Client(
        CONSUMER_KEY,
        client_secret=consumer_secret,
        resource_owner_key=TOKEN_ID,
        resource_owner_secret=TOKEN_SECRET,
        signature_method=SIGNATURE_HMAC_SHA256,
        realm=realm if realm is not None else fake.realm,
    )
    _, headers, _ = client.sign(
        url, http_method=method, body=body, headers={"Content-Type": "application/json"}
    )
    return dict(headers)


# --- the token endpoint --------------------------------------------------------------


@pytest.mark.parametrize(("alg", "kid"), [("PS256", "cert-ps"), ("ES256", "cert-es")])
def test_a_ps256_or_es256_assertion_gets_an_access_token_that_opens_the_record_api(
    fake: FakeNetSuite, keys: Keys, alg: str, kid: str
) -> None:
    key = keys.ps if alg == "PS256" else keys.es
    answer = ask_token(fake, assertion(fake, key, alg, kid))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert (body["expires_in"], body["token_type"]) == ("3600", "bearer")
    assert fake.token_requests[-1].header["alg"] == alg
    opened = httpx.get(
        invoice_url(fake, "eid:nothing-here"),
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert opened.status_code == 404  # past the login: the record is simply not there
    assert details(opened)[0]["o:errorCode"] == "NONEXISTENT_ID"


@pytest.mark.parametrize(
    "scope", ["rest_webservices", "restlets,rest_webservices", ["restlets", "rest_webservices"]]
)
def test_scope_is_taken_as_a_comma_separated_string_or_a_list(
    fake: FakeNetSuite, keys: Keys, scope: Any
) -> None:
    answer = ask_token(fake, assertion(fake, keys.ps, "PS384", "cert-ps", scope=scope))

    assert answer.status_code == 200, answer.text


def test_an_assertion_of_exactly_sixty_minutes_passes(fake: FakeNetSuite, keys: Keys) -> None:
    now = int(time.time())
    answer = ask_token(fake, assertion(fake, keys.es, "ES256", "cert-es", iat=now, exp=now + 3600))

    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong aud", "invalid_grant"),
        ("unknown kid", "invalid_client"),
        ("RS256", "invalid_request"),
        ("HS256", "invalid_request"),
        ("expired", "invalid_grant"),
        ("lives 3601 s", "invalid_grant"),
        ("another client's iss", "invalid_client"),
        ("signed by another key", "invalid_client"),
        ("no rest scope", "invalid_scope"),
        ("revoked certificate", "invalid_client"),
    ],
)
def test_netsuite_refuses_a_bad_assertion(
    fake: FakeNetSuite, keys: Keys, case: str, error: str
) -> None:
    now = int(time.time())
    fake.revoke_certificate("cert-revoked")
    client_assertion = {
        "wrong aud": lambda: assertion(
            fake, keys.ps, "PS256", "cert-ps", aud="https://1234567.app.netsuite.com/token"
        ),
        "unknown kid": lambda: assertion(fake, keys.ps, "PS256", "cert-nope"),
        "RS256": lambda: assertion(fake, keys.ps, "RS256", "cert-ps"),
        "HS256": lambda: jwt.encode(
            {"iss": CLIENT_ID, "scope": "rest_webservices", "aud": fake.token_url},
            "a-shared-secret-of-at-least-32-bytes!!",
            algorithm="HS256",
            headers={"kid": "cert-ps"},
        ),
        "expired": lambda: assertion(
            fake, keys.ps, "PS256", "cert-ps", iat=now - 3700, exp=now - 100
        ),
        "lives 3601 s": lambda: assertion(
            fake, keys.ps, "PS256", "cert-ps", iat=now, exp=now + 3601
        ),
        "another client's iss": lambda: assertion(fake, keys.ps, "PS256", "cert-ps", iss="x"),
        "signed by another key": lambda: assertion(fake, keys.other, "PS256", "cert-ps"),
        "no rest scope": lambda: assertion(fake, keys.ps, "PS256", "cert-ps", scope="email"),
        "revoked certificate": lambda: assertion(fake, keys.ps, "PS256", "cert-revoked"),
    }[case]()

    answer = ask_token(fake, client_assertion)

    assert answer.status_code == 400
    assert answer.json()["error"] == error, answer.json()
    assert "access_token" not in answer.json()
    assert (fake.token_requests[-1].status, fake.token_requests[-1].error) == (400, error)


def test_the_token_endpoint_wants_the_client_credentials_form(
    fake: FakeNetSuite, keys: Keys
) -> None:
    good = assertion(fake, keys.ps, "PS256", "cert-ps")
    wrong_grant = httpx.post(
        fake.token_url,
        data={
            "grant_type": "authorization_code",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": good,
        },
    )
    as_json = httpx.post(
        fake.token_url,
        json={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": good,
        },
    )

    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (
        400,
        "unsupported_grant_type",
    )
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


def test_an_expired_access_token_is_an_invalid_login(
    fake: FakeNetSuite, keys: Keys, books: Books, eid: str
) -> None:
    token = ask_token(fake, assertion(fake, keys.es, "ES256", "cert-es")).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(invoice_url(fake, f"eid:{eid}"), headers=headers).status_code == 404

    fake.expire_access_tokens()
    answer = httpx.get(invoice_url(fake, f"eid:{eid}"), headers=headers)

    assert answer.status_code == 401
    assert details(answer) == [{"detail": INVALID_LOGIN, "o:errorCode": "INVALID_LOGIN"}]
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert fake.audit_trail[-1].detail == "AccessTokenExpired"


# --- TBA -----------------------------------------------------------------------------


def test_tba_signed_by_oauthlib_upserts_and_reads(
    fake: FakeNetSuite, books: Books, eid: str
) -> None:
    url = invoice_url(fake, f"eid:{eid}")
    body = json.dumps(invoice_body(books, usage_line(books)))

    written = httpx.put(url, content=body, headers=tba_headers(fake, "PUT", url, body))
    read_url = url + "?expandSubResources=true"
    read = httpx.get(read_url, headers=tba_headers(fake, "GET", read_url))

    assert written.status_code == 204, written.text
    assert read.status_code == 200, read.text
    assert read.json()["externalId"] == eid
    assert fake.calls[-1].auth == "tba"
    assert read.headers["content-type"].startswith("application/vnd.oracle.resource+json")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad consumer secret", "InvalidSignature"),
        ("lower-case realm", "InvalidAccount"),
        ("reused nonce", "NonceUsed"),
    ],
)
def test_tba_refuses_a_bad_signature_a_wrong_realm_and_a_reused_nonce(
    keys: Keys, case: str, reason: str
) -> None:
    sandbox = FakeNetSuite(account_id="1234567_SB1").start()
    try:
        sandbox.register_tba(CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET)
        assert sandbox.realm == "1234567_SB1"
        url = invoice_url(sandbox, "eid:x")
        if case == "bad consumer secret":
            headers = tba_headers(sandbox, "GET", url, consumer_secret="not-the-secret")
        elif case == "lower-case realm":
            headers = tba_headers(sandbox, "GET", url, realm="1234567_sb1")
        else:
            headers = tba_headers(sandbox, "GET", url)
            assert httpx.get(url, headers=headers).status_code == 404  # in, no such record

        answer = httpx.get(url, headers=headers)

        assert answer.status_code == 401
        assert details(answer)[0]["o:errorCode"] == "INVALID_LOGIN"
        assert sandbox.audit_trail[-1].detail == reason
    finally:
        sandbox.stop()


# --- the invoice record --------------------------------------------------------------


def test_upserting_twice_with_one_external_id_leaves_one_invoice(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    first = put(fake, bearer, eid, invoice_body(books, usage_line(books, 1000, 0.02)))
    again = put(
        fake,
        bearer,
        eid,
        invoice_body(books, usage_line(books, 2000, 0.02)),
        "?replace=item",
    )

    assert (first.status_code, again.status_code) == (204, 204)
    invoice = fake.invoice_by_external_id(eid)
    assert invoice is not None
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].endswith(f"/services/rest/record/v1/invoice/{invoice['id']}")
    assert [inv["id"] for inv in fake.invoices() if inv["externalId"] == eid] == [invoice["id"]]
    assert lines_of(fake, eid) == [(2, books.usage, 2000.0, 0.02, 40.0)]
    assert invoice["total"] == 40.0


def test_an_upsert_update_without_replace_appends_the_lines_as_an_update_does(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    body = invoice_body(books, usage_line(books, 1000, 0.02))
    put(fake, bearer, eid, body)

    put(fake, bearer, eid, body)

    assert lines_of(fake, eid) == [
        (1, books.usage, 1000.0, 0.02, 20.0),
        (2, books.usage, 1000.0, 0.02, 20.0),
    ]


def test_patch_with_replace_item_replaces_the_lines_and_without_it_adds_or_updates(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    put(fake, bearer, eid, invoice_body(books, usage_line(books, 10, 1), usage_line(books, 5, 2)))
    url = invoice_url(fake, f"eid:{eid}")

    added = httpx.patch(
        url, json={"item": {"items": [{"item": {"id": books.fee}}]}}, headers=bearer
    )
    assert added.status_code == 204, added.text
    assert lines_of(fake, eid) == [
        (1, books.usage, 10.0, 1.0, 10.0),
        (2, books.usage, 5.0, 2.0, 10.0),
        (3, books.fee, 1.0, 250.0, 250.0),  # the item's base price
    ]

    updated = httpx.patch(
        url, json={"item": {"items": [{"line": 2, "quantity": 7}]}}, headers=bearer
    )
    assert updated.status_code == 204, updated.text
    assert lines_of(fake, eid)[1] == (2, books.usage, 7.0, 2.0, 14.0)

    replaced = httpx.patch(
        url + "?replace=item",
        json={"memo": "v2", "item": {"items": [usage_line(books, 3, 0.5, amount=1.49)]}},
        headers=bearer,
    )
    assert replaced.status_code == 204, replaced.text
    assert lines_of(fake, eid) == [(4, books.usage, 3.0, 0.5, 1.49)]
    invoice = fake.invoice_by_external_id(eid)
    assert invoice is not None
    assert (invoice["memo"], invoice["total"], invoice["tranDate"]) == ("v2", 1.49, "2026-05-31")


def test_patch_can_change_the_external_id_but_not_to_one_in_use(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    taken = f"{eid}-taken"
    put(fake, bearer, taken, invoice_body(books, usage_line(books)))
    put(fake, bearer, eid, invoice_body(books, usage_line(books)))
    url = invoice_url(fake, f"eid:{eid}")

    clash = httpx.patch(url, json={"externalId": taken}, headers=bearer)
    moved = httpx.patch(url, json={"externalId": f"{eid}-v2"}, headers=bearer)

    assert clash.status_code == 400
    assert details(clash)[0]["o:errorPath"] == "externalId"
    assert moved.status_code == 204
    assert fake.invoice_by_external_id(eid) is None
    assert fake.invoice_by_external_id(f"{eid}-v2") is not None


def test_get_expands_the_item_sublist_only_when_asked(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    put(fake, bearer, eid, invoice_body(books, usage_line(books, description="API calls, May")))

    plain = httpx.get(invoice_url(fake, f"eid:{eid}"), headers=bearer).json()
    by_id = httpx.get(
        invoice_url(fake, plain["id"], "?expandSubResources=true"), headers=bearer
    ).json()

    assert set(plain["item"]) == {"links"}
    assert by_id["item"]["items"][0]["description"] == "API calls, May"
    assert by_id["entity"] == {
        "links": [
            {"rel": "self", "href": f"{fake.url}/services/rest/record/v1/customer/{books.customer}"}
        ],
        "id": books.customer,
        "refName": "Acme",
    }
    assert by_id["currency"]["refName"] == "USD"


@pytest.mark.parametrize(
    ("case", "status", "code", "path"),
    [
        ("unknown customer", 400, "USER_ERROR", "entity"),
        ("unknown item", 400, "USER_ERROR", "item.items[1]"),
        ("no subsidiary", 400, "USER_ERROR", "subsidiary"),
        ("no lines", 400, "USER_ERROR", "item"),
        ("bad date", 400, "USER_ERROR", "tranDate"),
        ("unknown field", 400, "INVALID_CONTENT", "amountDue"),
        ("bad external id", 400, "INVALID_ID", None),
        ("no credentials", 401, "INVALID_LOGIN", None),
        ("missing record", 404, "NONEXISTENT_ID", None),
    ],
)
def test_errors_carry_o_error_details(
    fake: FakeNetSuite,
    bearer: dict[str, str],
    books: Books,
    eid: str,
    case: str,
    status: int,
    code: str,
    path: str | None,
) -> None:
    good = invoice_body(books, usage_line(books))
    if case == "unknown customer":
        answer = put(fake, bearer, eid, {**good, "entity": {"id": "999999"}})
    elif case == "unknown item":
        lines = [usage_line(books), {"item": {"id": "999999"}, "quantity": 1, "rate": 1}]
        answer = put(fake, bearer, eid, invoice_body(books, *lines))
    elif case == "no subsidiary":
        answer = put(fake, bearer, eid, {k: v for k, v in good.items() if k != "subsidiary"})
    elif case == "no lines":
        answer = put(fake, bearer, eid, invoice_body(books))
    elif case == "bad date":
        answer = put(fake, bearer, eid, {**good, "tranDate": "31/05/2026"})
    elif case == "unknown field":
        answer = put(fake, bearer, eid, {**good, "amountDue": 5})
    elif case == "bad external id":
        answer = put(fake, bearer, "bill 1.v2", good)
    elif case == "no credentials":
        answer = put(fake, {}, eid, good)
    else:
        answer = httpx.delete(invoice_url(fake, "987654321"), headers=bearer)

    assert answer.status_code == status, answer.text
    entry = details(answer)[0]
    assert entry["o:errorCode"] == code
    assert entry.get("o:errorPath") == path
    assert fake.invoice_by_external_id(eid) is None


def test_a_paid_invoice_can_be_neither_changed_nor_deleted(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    put(fake, bearer, eid, invoice_body(books, usage_line(books, 100, 1)))
    invoice = fake.invoice_by_external_id(eid)
    assert invoice is not None
    fake.pay(invoice["id"])

    changed = put(fake, bearer, eid, invoice_body(books, usage_line(books, 1, 1)), "?replace=item")
    deleted = httpx.delete(invoice_url(fake, invoice["id"]), headers=bearer)

    assert (changed.status_code, deleted.status_code) == (400, 400)
    assert "dependent records" in details(deleted)[0]["detail"]
    paid = fake.invoice_by_external_id(eid)
    assert paid is not None
    assert (paid["status"]["refName"], paid["amountRemaining"], paid["total"]) == (
        "Paid In Full",
        0.0,
        100.0,
    )


def test_an_unpaid_invoice_is_deleted_by_external_id(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    put(fake, bearer, eid, invoice_body(books, usage_line(books)))

    deleted = httpx.delete(invoice_url(fake, f"eid:{eid}"), headers=bearer)

    assert deleted.status_code == 204
    assert fake.invoice_by_external_id(eid) is None


# --- concurrency and faults ----------------------------------------------------------


def test_over_the_concurrency_limit_a_request_is_refused_at_once(
    fake: FakeNetSuite, bearer: dict[str, str]
) -> None:
    assert fake.concurrency_limit == 5
    wait_for(lambda: fake.in_flight() == 0, timeout=5, what="earlier requests to finish")
    fake.fail_next(5, "hang", endpoint="get")

    def get(_: int) -> int:
        return httpx.get(invoice_url(fake, "eid:held"), headers=bearer, timeout=10).status_code

    fake.hang_seconds = 2.0  # the five hold their slots while the sixth comes in
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            statuses = sorted(pool.map(get, range(6)))
    finally:
        fake.hang_seconds = 0.5

    assert statuses == [429, 500, 500, 500, 500, 500]
    refused = next(call for call in reversed(fake.calls) if call.status == 429)
    assert refused.auth is None  # refused before anything else
    assert fake.max_concurrent() == 5


def test_the_429_body_names_the_concurrency_limit(
    fake: FakeNetSuite, bearer: dict[str, str]
) -> None:
    fake.fail_next(1, "429")

    answer = httpx.get(invoice_url(fake, "eid:any"), headers=bearer)

    assert answer.status_code == 429
    assert details(answer)[0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert "retry-after" not in answer.headers


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("401", 401)])
def test_a_failing_write_does_nothing(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str, kind: str, status: int
) -> None:
    fake.fail_next(1, kind, endpoint="upsert")

    answer = put(fake, bearer, eid, invoice_body(books, usage_line(books)))

    assert answer.status_code == status
    assert details(answer)[0]["o:errorCode"] in ("UNEXPECTED_ERROR", "INVALID_LOGIN")
    assert fake.invoice_by_external_id(eid) is None
    assert put(fake, bearer, eid, invoice_body(books, usage_line(books))).status_code == 204


def test_hang_does_nothing_and_apply_then_hang_does_the_write(
    fake: FakeNetSuite, bearer: dict[str, str], books: Books, eid: str
) -> None:
    body = invoice_body(books, usage_line(books))
    fake.fail_next(1, "hang", endpoint="upsert")
    with pytest.raises(httpx.ReadTimeout):
        httpx.put(invoice_url(fake, f"eid:{eid}"), json=body, headers=bearer, timeout=0.2)
    assert fake.invoice_by_external_id(eid) is None

    fake.fail_next(1, "apply_then_hang", endpoint="upsert")
    with pytest.raises(httpx.ReadTimeout):
        httpx.put(invoice_url(fake, f"eid:{eid}"), json=body, headers=bearer, timeout=0.2)

    assert fake.invoice_by_external_id(eid) is not None
    assert len(fake.applied("upsert")) >= 1


def test_a_token_request_can_be_failed_too(fake: FakeNetSuite, keys: Keys) -> None:
    fake.fail_next(1, "500", endpoint="token")

    answer = ask_token(fake, assertion(fake, keys.ps, "PS256", "cert-ps"))

    assert answer.status_code == 500
    assert ask_token(fake, assertion(fake, keys.ps, "PS256", "cert-ps")).status_code == 200
