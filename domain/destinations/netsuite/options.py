"""NetSuite's options and credential.

The options NetSuite shares with the other destinations (the price choice,
``split_usage_line_items``, ``sort_line_items_by``) keep their names; for NetSuite a "price
id" is an item's internal id: ``default_price_id``, ``price_id_mapping``,
``minimum_spend_item_price_id``, ``standing_charge_item_price_id`` and the external mapping
``product`` → ``netsuite``/``item``.

The credential is one model for NetSuite's two ways in, chosen by ``auth``, rather than two
models: a destination names one credential type (``DestinationSpec.credential``), both ways
reach the same account (``account_id``, ``concurrent_calls``) and are read the same way by a
run, and an account moving from TBA to M2M (no new TBA integrations from 2027.1) keeps one
kind of credential. Each field of the way not chosen is refused, so a credential never
stores a secret it does not use.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import Field, SecretStr, ValidationInfo, field_validator

from domain.destinations.spec import CredentialFields, DestinationOptions, Grant

#: An internal id of a NetSuite record (a subsidiary, a currency).
INTERNAL_ID = r"^[0-9]+$"
#: NetSuite account ids: ``1234567``, ``1234567_SB1`` (a sandbox), ``TSTDRV1234567``; host
#: names write the separator as ``-`` and the letters in lower case.
ACCOUNT_ID = r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$"
#: RSA keys shorter than this are refused before NetSuite sees them.
MIN_RSA_BITS = 2048


class NetSuiteConfig(DestinationOptions):
    #: The invoice's subsidiary (NetSuite OneWorld) when the account has no external
    #: mapping ``account`` → ``netsuite``/``subsidiary``; none: not sent (accounts without
    #: subsidiaries).
    subsidiary_id: str | None = Field(None, pattern=INTERNAL_ID, max_length=20)
    #: The invoice's dueDate: this many days after its tranDate (the bill's period end).
    due_days: int = Field(30, ge=0, le=730)
    #: A bill's currency (ISO code) → the internal id of NetSuite's currency record. Empty:
    #: no currency is sent and the invoice is in the customer's currency. Otherwise every
    #: bill's currency must be here: a bill in a currency missing from it fails validation
    #: rather than go out in the customer's.
    currency_ids: dict[str, str] = Field(default_factory=dict, max_length=200)

    @field_validator("currency_ids")
    @classmethod
    def _currency_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for code, internal_id in value.items():
            if not re.fullmatch(r"[A-Za-z]{3}", code):
                raise ValueError(f"{code!r} is not a three-letter currency code")
            if not re.fullmatch(INTERNAL_ID, internal_id):
                raise ValueError(f"{internal_id!r} is not an internal id (digits) for {code}")
        return {code.upper(): internal_id for code, internal_id in value.items()}


class NetSuiteAuth(StrEnum):
    #: OAuth 2.0 client credentials (machine to machine): a JWT signed with the private key
    #: of a certificate mapped to the integration (Setup > Integration > OAuth 2.0 Client
    #: Credentials Setup) buys an access token of 60 minutes.
    M2M = "m2m"
    #: Token-Based Authentication: every request signed (OAuth 1.0a, HMAC-SHA256) with the
    #: integration's consumer key and secret and an access token id and secret.
    TBA = "tba"


class JwtAlgorithm(StrEnum):
    #: RSASSA-PSS with SHA-256: an RSA key.
    PS256 = "PS256"
    #: ECDSA on P-256 with SHA-256: an EC key on the curve secp256r1.
    ES256 = "ES256"


_M2M_FIELDS = ("client_id", "certificate_id", "private_key")
_TBA_FIELDS = ("consumer_key", "consumer_secret", "token_id", "token_secret")


class NetSuiteCredential(CredentialFields):
    """A NetSuite account and an integration's way into it. ``auth`` ``m2m``:
    ``client_id`` (the integration record's), ``certificate_id`` and the certificate's
    ``private_key`` (PEM, unencrypted; RSA for ``PS256``, EC P-256 for ``ES256``). ``tba``:
    ``consumer_key``, ``consumer_secret``, ``token_id``, ``token_secret``."""

    # ``auth`` and ``algorithm`` come first: the other fields' validators read them.
    auth: NetSuiteAuth
    account_id: str = Field(min_length=1, max_length=40, pattern=ACCOUNT_ID)
    algorithm: JwtAlgorithm = JwtAlgorithm.PS256
    client_id: str | None = Field(None, min_length=1, max_length=200, validate_default=True)
    certificate_id: str | None = Field(None, min_length=1, max_length=200, validate_default=True)
    private_key: SecretStr | None = Field(
        None,
        min_length=1,
        max_length=20_000,
        validate_default=True,
        description="Stored encrypted. PEM, unencrypted.",
    )
    consumer_key: str | None = Field(None, min_length=1, max_length=200, validate_default=True)
    consumer_secret: SecretStr | None = Field(
        None, min_length=1, max_length=200, validate_default=True, description="Stored encrypted."
    )
    token_id: str | None = Field(None, min_length=1, max_length=200, validate_default=True)
    token_secret: SecretStr | None = Field(
        None, min_length=1, max_length=200, validate_default=True, description="Stored encrypted."
    )
    concurrent_calls: int = Field(
        5,
        ge=1,
        le=500,
        description="Calls meterbridge makes to the account at once. NetSuite's limit (15 "
        "for tier 1, plus 10 for each SuiteCloud Plus licence) is shared with every other "
        "integration of the account.",
    )

    @field_validator(*_M2M_FIELDS, *_TBA_FIELDS)
    @classmethod
    def _belongs_to_auth(cls, value: Any, info: ValidationInfo) -> Any:
        auth = info.data.get("auth")
        if auth is None:  # ``auth`` itself was refused: that is the error to show
            return value
        needed = _M2M_FIELDS if auth == NetSuiteAuth.M2M else _TBA_FIELDS
        if info.field_name in needed and value is None:
            raise ValueError(f"required when auth is {auth.value}")
        if info.field_name not in needed and value is not None:
            raise ValueError(f"not used when auth is {auth.value}: leave it out")
        return value

    @field_validator("private_key")
    @classmethod
    def _a_key_for_the_algorithm(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        algorithm = info.data.get("algorithm")
        if value is None or algorithm is None:
            return value
        check_private_key(value.get_secret_value(), algorithm)
        return value

    def public(self) -> dict[str, Any]:
        """The public fields of the chosen way in (the other way's are all empty)."""
        return {name: value for name, value in super().public().items() if value is not None}

    @property
    def grant(self) -> Grant:
        if self.auth == NetSuiteAuth.M2M:
            return Grant.CLIENT_CREDENTIALS
        return Grant.SIGNED_REQUESTS

    @property
    def realm(self) -> str:
        """The account id as NetSuite writes it (TBA's ``realm``): ``123456_SB1``."""
        return self.account_id.upper().replace("-", "_")

    @property
    def host_account(self) -> str:
        """The account id as host names write it: ``123456-sb1``."""
        return self.account_id.lower().replace("_", "-")

    @property
    def site(self) -> str:
        """The account, which numbers the invoices a run writes (``DestinationSpec.scope``):
        internal ids repeat across accounts, a sandbox's among them."""
        return f"netsuite:{self.realm}"


def check_private_key(pem: str, algorithm: JwtAlgorithm) -> None:
    """Raises ``ValueError`` saying what is wrong unless ``pem`` is an unencrypted private
    key that ``algorithm`` signs with."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise ValueError("the private key is encrypted: give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            "not a PEM private key (-----BEGIN PRIVATE KEY----- …), or one that cannot be read"
        ) from None
    if algorithm == JwtAlgorithm.PS256:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"PS256 signs with an RSA key, and this key is {_kind(key)}")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the RSA key has {key.key_size} bits: at least {MIN_RSA_BITS}")
    elif not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"):
        raise ValueError(f"ES256 signs with an EC key on P-256, and this key is {_kind(key)}")


def _kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC on {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "another kind"
