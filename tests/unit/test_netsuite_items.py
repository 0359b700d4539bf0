"""NetSuite's domain package, pure: a bill as invoice lines (every option, the total always
the bill's), the invoice's body, and the credential as it is checked when saved."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import ValidationError

from domain.bills import LineItem, LineItemType
from domain.destinations.netsuite import NETSUITE, NetSuiteConfig, NetSuiteCredential
from domain.destinations.netsuite.items import (
    InvoiceFor,
    NetSuiteLine,
    netsuite_invoice,
    netsuite_lines,
)
from domain.destinations.pieces import BillToMap
from domain.destinations.spec import Grant
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import ConfigInvalid, PerformFailed

T = LineItemType
START, END = date(2026, 10, 1), date(2026, 11, 1)


def line(type: T = T.USAGE, **fields: object) -> LineItem:
    values: dict[str, object] = {"type": type, "quantity": 1, "subtotal": "10"} | fields
    return LineItem.model_validate(values)


def lines(
    *bill_lines: LineItem, items: dict[str, str] | None = None, **options: object
) -> list[NetSuiteLine]:
    config = NetSuiteConfig.model_validate({"default_price_id": "7", **options})
    return netsuite_lines(
        BillToMap("USD", START, END, list(bill_lines)), EntityConfig(), config, items or {}
    )


def sent(result: list[NetSuiteLine]) -> list[dict[str, Any]]:
    """The ``item.items`` entries as NetSuite receives them: through JSON."""
    return [json.loads(json.dumps(entry.line_item())) for entry in result]


# --- lines ---------------------------------------------------------------------------


def test_an_exact_line_goes_at_its_quantity_rate_and_amount() -> None:
    result = lines(line(quantity=1234, unit_price="0.0125", subtotal="15.43", description="API"))

    assert sent(result) == [
        {
            "item": {"id": "7"},
            "quantity": 1234,
            "rate": 0.0125,
            "amount": 15.43,
            "description": "API",
        }
    ]


def test_a_line_whose_rate_times_quantity_is_not_its_subtotal_goes_as_one_at_the_subtotal() -> None:
    # 1234 x 0.0125 = 15.425, which rounds to 15.43; the bill says 15.42
    [result] = lines(line(quantity=1234, unit_price="0.0125", subtotal="15.42", description="API"))

    assert (result.quantity, result.rate, result.amount) == (1, Decimal("15.42"), Decimal("15.42"))
    assert result.description == "API (1234)"


def test_a_quantity_finer_than_eight_places_goes_as_one_at_the_subtotal() -> None:
    [result] = lines(line(quantity="0.123456789", subtotal="1.23", description="GB"))

    assert (result.quantity, result.amount, result.description) == (
        1,
        Decimal("1.23"),
        "GB (0.123456789)",
    )


def test_a_line_without_a_unit_price_is_priced_by_its_subtotal_spread_over_its_quantity() -> None:
    [result] = lines(line(quantity=4, subtotal="10.00"))

    assert (result.quantity, result.rate, result.amount) == (4, Decimal("2.5"), Decimal("10.00"))
    assert result.description == "Usage"


def test_a_line_with_neither_unit_price_nor_subtotal_is_priced_by_netsuite() -> None:
    bill_line = LineItem.model_validate({"type": "STANDING_CHARGE", "quantity": 2})

    assert sent(lines(bill_line)) == [
        {"item": {"id": "7"}, "quantity": 2, "description": "Standing charge"}
    ]


def test_the_amounts_add_up_to_the_bill() -> None:
    bill_lines = [
        line(quantity=3, unit_price="3.33", subtotal="10.00"),
        line(quantity=1000, unit_price="0.0012", subtotal="1.20"),
        line(quantity="2.5", unit_price="3", subtotal="7.51"),
        line(T.CREDIT_MEMO, quantity=1, subtotal="-5.00"),
    ]

    result = lines(*bill_lines)

    assert sum(entry.amount or 0 for entry in result) == Decimal("13.71")
    assert all(
        (entry.quantity * (entry.rate or 0)).quantize(Decimal("0.01")) == entry.amount
        for entry in result
    )


def test_the_item_is_chosen_as_every_destination_chooses_a_price() -> None:
    bill_lines = [
        line(T.MINIMUM_SPEND),
        line(T.STANDING_CHARGE),
        line(T.USAGE, product_id="api"),
        line(T.USAGE, product_id="unmapped"),
    ]

    result = lines(
        *bill_lines,
        items={"api": "55"},
        minimum_spend_item_price_id="11",
        price_id_mapping={"STANDING_CHARGE": "22"},
    )

    assert [entry.item_id for entry in result] == ["11", "22", "55", "7"]


def test_a_line_without_an_item_fails_validation_saying_how_to_give_one() -> None:
    with pytest.raises(ConfigInvalid, match=r"product → netsuite/item"):
        lines(line(product_id="api"), default_price_id=None)


def test_lines_are_sorted_and_split_as_the_options_say() -> None:
    bill_lines = [line(subtotal="9"), line(subtotal="1"), line(subtotal="5")]

    result = lines(*bill_lines, sort_line_items_by="subtotal")

    assert [entry.amount for entry in result] == [1, 5, 9]


def test_what_a_line_says_is_its_fingerprint() -> None:
    [a, b, c] = lines(line(subtotal="1"), line(subtotal="1"), line(subtotal="2"))

    assert a.form()["meterbridge_item"] == "1"
    assert (a.fingerprint == b.fingerprint, a.fingerprint == c.fingerprint) == (False, False)
    assert a.fingerprint == lines(line(subtotal="1"))[0].fingerprint


# --- the invoice ---------------------------------------------------------------------


def invoice(
    options: dict[str, Any] | None = None, *, currency: str = "USD", **fields: Any
) -> dict[str, Any]:
    bill = InvoiceFor(
        bill_id=fields.pop("bill_id", "bill_01JABC"),
        bill_version=3,
        currency=currency,
        period_start=START,
        period_end=END,
        customer_id="101",
        **fields,
    )
    config = NetSuiteConfig.model_validate({"default_price_id": "7", **(options or {})})
    return netsuite_invoice(bill, config, lines(line(), **(options or {})))


def test_the_invoice_names_the_bill_and_is_dated_by_its_period() -> None:
    body = invoice({"due_days": 14, "subsidiary_id": "3"})

    assert body == {
        "externalId": "bill_01JABC",
        "entity": {"id": "101"},
        "subsidiary": {"id": "3"},
        "tranDate": "2026-11-01",
        "dueDate": "2026-11-15",
        "memo": "meterbridge bill bill_01JABC, version 3: 2026-10-01 to 2026-11-01",
        "item": {
            "items": [
                {
                    "item": {"id": "7"},
                    "quantity": 1.0,
                    "rate": 10.0,
                    "amount": 10.0,
                    "description": "Usage",
                }
            ]
        },
    }


def test_the_accounts_subsidiary_wins_over_the_configs_and_none_is_sent_without_either() -> None:
    assert invoice({"subsidiary_id": "3"}, subsidiary_id="9")["subsidiary"] == {"id": "9"}
    assert "subsidiary" not in invoice()


def test_the_currency_is_sent_only_when_mapped_and_a_bill_outside_the_mapping_fails() -> None:
    mapped = {"currency_ids": {"usd": "1", "GBP": "2"}}

    assert invoice(mapped, currency="GBP")["currency"] == {"id": "2"}
    assert "currency" not in invoice(currency="GBP")
    with pytest.raises(ConfigInvalid, match=r"EUR, which currency_ids does not map .*GBP, USD"):
        invoice(mapped, currency="EUR")


@pytest.mark.parametrize("bill_id", ["bill 1", "bill/1", "bill:1", ""])
def test_a_bill_id_that_cannot_be_an_external_id_is_refused(bill_id: str) -> None:
    with pytest.raises(PerformFailed, match="external id"):
        invoice(bill_id=bill_id)


def test_currency_ids_are_codes_to_internal_ids() -> None:
    with pytest.raises(ValidationError, match="not an internal id"):
        NetSuiteConfig.model_validate({"currency_ids": {"USD": "US Dollar"}})
    with pytest.raises(ValidationError, match="three-letter"):
        NetSuiteConfig.model_validate({"currency_ids": {"dollar": "1"}})


# --- the credential ------------------------------------------------------------------


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def m2m(**fields: Any) -> dict[str, Any]:
    return {
        "auth": "m2m",
        "account_id": "1234567_sb1",
        "client_id": "client",
        "certificate_id": "cert",
        **fields,
    }


TBA = {
    "auth": "tba",
    "account_id": "1234567",
    "consumer_key": "ck",
    "consumer_secret": "cs",
    "token_id": "tid",
    "token_secret": "ts",
}


def refusals(fields: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    """Each refused field's message."""
    with pytest.raises(ValidationError) as raised:
        NetSuiteCredential.model_validate(fields)
    return {error["loc"]: error["msg"] for error in raised.value.errors()}


def test_an_m2m_credential_keeps_its_key_secret_and_names_the_account_both_ways(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    credential = NetSuiteCredential.model_validate(m2m(private_key=pem(rsa_key)))

    assert credential.grant == Grant.CLIENT_CREDENTIALS
    assert (credential.realm, credential.host_account) == ("1234567_SB1", "1234567-sb1")
    assert credential.public() == {
        "auth": "m2m",
        "account_id": "1234567_sb1",
        "algorithm": "PS256",
        "client_id": "client",
        "certificate_id": "cert",
        "concurrent_calls": 5,
    }
    assert list(credential.secrets()) == ["private_key"]
    assert NETSUITE.scope(credential) == "netsuite:1234567_SB1"  # internal ids are per account


def test_a_tba_credential_signs_requests() -> None:
    credential = NetSuiteCredential.model_validate(TBA)

    assert credential.grant == Grant.SIGNED_REQUESTS
    assert sorted(credential.secrets()) == ["consumer_secret", "token_secret"]


@pytest.mark.parametrize(
    ("fields", "loc", "message"),
    [
        ({**TBA, "token_secret": None}, ("token_secret",), "required when auth is tba"),
        ({**TBA, "client_id": "c"}, ("client_id",), "not used when auth is tba"),
        (m2m(), ("private_key",), "required when auth is m2m"),
        (m2m(consumer_key="ck"), ("consumer_key",), "not used when auth is m2m"),
        ({**TBA, "account_id": "1234567 SB1"}, ("account_id",), "should match pattern"),
        ({**TBA, "auth": "oauth1"}, ("auth",), "'m2m' or 'tba'"),
    ],
)
def test_the_fields_of_the_chosen_way_in_are_required_and_the_others_refused(
    fields: dict[str, Any], loc: tuple[str, ...], message: str
) -> None:
    found = refusals(fields)

    assert message in found[loc]


def test_an_es256_credential_takes_an_ec_key_on_p256() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    credential = NetSuiteCredential.model_validate(m2m(algorithm="ES256", private_key=pem(key)))

    assert credential.algorithm == "ES256"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not a key", "not a PEM private key"),
        ("a public key", "not a PEM private key"),
        ("encrypted", "encrypted: give it without a passphrase"),
        ("EC key for PS256", "PS256 signs with an RSA key, and this key is EC on secp256r1"),
        ("RSA key for ES256", "ES256 signs with an EC key on P-256, and this key is RSA"),
        ("P-384 key for ES256", "this key is EC on secp384r1"),
        ("Ed25519", "PS256 signs with an RSA key, and this key is Ed25519"),
        ("RSA 1024", "1024 bits"),
    ],
)
def test_a_private_key_that_cannot_sign_the_assertion_is_refused_when_saved(
    rsa_key: rsa.RSAPrivateKey, case: str, message: str
) -> None:
    algorithm, key_pem = {
        "not a key": lambda: (
            "PS256",
            "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----",
        ),
        "a public key": lambda: (
            "PS256",
            rsa_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
        ),
        "encrypted": lambda: ("PS256", pem(rsa_key, b"secret")),
        "EC key for PS256": lambda: ("PS256", pem(ec.generate_private_key(ec.SECP256R1()))),
        "RSA key for ES256": lambda: ("ES256", pem(rsa_key)),
        "P-384 key for ES256": lambda: ("ES256", pem(ec.generate_private_key(ec.SECP384R1()))),
        "Ed25519": lambda: (
            "PS256",
            ed25519.Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode(),
        ),
        "RSA 1024": lambda: (
            "PS256",
            pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 (refused: the point)
        ),
    }[case]()

    found = refusals(m2m(algorithm=algorithm, private_key=key_pem))

    assert list(found) == [("private_key",)]
    assert message in found[("private_key",)]
    assert key_pem not in str(found)  # the error never repeats the secret
