"""QuickBooks Online's options and credential. The options QuickBooks shares with the
other destinations (the price choice, ``split_usage_line_items``, ``sort_line_items_by``)
keep their names; for QuickBooks a "price id" names an item (the ``Id`` an ``ItemRef``
carries): ``default_price_id``, ``price_id_mapping``, ``minimum_spend_item_price_id``,
``standing_charge_item_price_id`` and the external mapping ``product`` →
``quickbooks``/``item``. The customer is the external mapping ``account`` →
``quickbooks``/``customer`` (a Customer ``Id``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr

from domain.destinations.spec import CredentialFields, DestinationOptions, Grant

#: Intuit's throttles per company (realm): 500 requests a minute, 10 at once
#: (https://blogs.intuit.com/2016/08/08/idg-concurrent-api-use-changes-coming-soon).
CALLS_PER_MINUTE = 500
CONCURRENT_CALLS = 10


class QuickBooksConfig(DestinationOptions):
    #: The invoice's DueDate: this many days after its TxnDate (the bill's period end).
    due_days: int = Field(30, ge=0, le=730)
    #: A TaxCodeRef for every line (a US company has ``TAX`` and ``NON``; elsewhere a
    #: tax code's Id); none: the item's default.
    tax_code_id: str | None = Field(None, min_length=1, max_length=100)


class QuickBooksEnvironment(StrEnum):
    PRODUCTION = "production"
    #: A sandbox company (developer.intuit.com), with the app's development keys.
    SANDBOX = "sandbox"


class QuickBooksCredential(CredentialFields):
    """An Intuit app's ``client_id`` and ``client_secret`` (developer.intuit.com → Keys &
    credentials; production and development keys differ, so ``environment`` says which).
    A person consents once in the browser and picks the company; the redirect URI to
    register is ``<public url>/oauth/quickbooks/callback``. The company (realm) the consent
    names becomes the credential's ``tenant_id``."""

    client_id: str = Field(min_length=1, max_length=100)
    client_secret: SecretStr = Field(min_length=1, max_length=200, description="Stored encrypted.")
    environment: QuickBooksEnvironment = QuickBooksEnvironment.PRODUCTION
    scopes: list[str] = Field(
        default_factory=lambda: ["com.intuit.quickbooks.accounting"], min_length=1
    )
    calls_per_minute: int = Field(
        CALLS_PER_MINUTE, ge=1, le=CALLS_PER_MINUTE, description="Intuit's limit per company."
    )
    concurrent_calls: int = Field(
        CONCURRENT_CALLS, ge=1, le=CONCURRENT_CALLS, description="Intuit's limit per company."
    )

    @property
    def grant(self) -> Grant:
        return Grant.AUTHORIZATION_CODE
