"""Xero's options and credential. The options Xero shares with the other destinations
(the price choice, ``split_usage_line_items``, ``sort_line_items_by``) keep their names;
for Xero a "price id" names an item (its ``ItemCode``): ``default_price_id``,
``price_id_mapping``, ``minimum_spend_item_price_id``, ``standing_charge_item_price_id``
and the external mapping ``product`` → ``xero``/``item``. See the README's "Xero" section."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr

from domain.bills import LineItemType
from domain.destinations.spec import CredentialFields, DestinationOptions, Grant


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    AUTHORISED = "AUTHORISED"


class LineAmountTypes(StrEnum):
    EXCLUSIVE = "Exclusive"
    INCLUSIVE = "Inclusive"
    NO_TAX = "NoTax"


class XeroConfig(DestinationOptions):
    #: The status an approved bill's invoice is given.
    invoice_status: InvoiceStatus = InvoiceStatus.DRAFT
    #: The invoice's DueDate: this many days after the bill's period ends.
    due_days: int = Field(30, ge=0, le=730)
    line_amount_types: LineAmountTypes = LineAmountTypes.EXCLUSIVE
    #: The sales account of lines whose line item type has none in account_code_mapping.
    default_account_code: str | None = Field(None, min_length=1, max_length=10)
    account_code_mapping: dict[LineItemType, str] = Field(default_factory=dict)
    #: A TaxType for every line (e.g. OUTPUT2); none: the account's or item's default.
    tax_type: str | None = Field(None, min_length=1, max_length=50)


class XeroGrant(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    #: A Custom Connection: one organisation, no consent in the browser.
    CLIENT_CREDENTIALS = "client_credentials"


class XeroCredential(CredentialFields):
    """A Xero app's ``client_id`` and ``client_secret`` (developer.xero.com → My Apps).
    ``authorization_code`` (a Web app): a person consents once in the browser; the
    redirect URI to register is ``<public url>/oauth/xero/callback``. ``client_credentials``
    (a Custom Connection): connected from the start, to the one organisation it was made
    for."""

    client_id: str = Field(min_length=1, max_length=100)
    client_secret: SecretStr = Field(min_length=1, max_length=200, description="Stored encrypted.")
    oauth_grant: XeroGrant = XeroGrant.AUTHORIZATION_CODE
    #: Xero's granular scopes (apps made from 2 March 2026); an older app may use
    #: ``accounting.transactions`` in place of ``accounting.invoices``.
    scopes: list[str] = Field(
        default_factory=lambda: ["offline_access", "accounting.invoices"], min_length=1
    )
    #: Which organisation to use when the consent gives access to several; none: the
    #: one the person connected last.
    tenant_id: str | None = Field(None, min_length=1, max_length=100)
    calls_per_minute: int = Field(60, ge=1, le=60, description="Xero's limit per tenant.")
    calls_per_day: int = Field(5000, ge=1, le=5000, description="Xero's limit per tenant.")
    concurrent_calls: int = Field(5, ge=1, le=5, description="Xero's limit per tenant.")

    @property
    def grant(self) -> Grant:
        if self.oauth_grant == XeroGrant.CLIENT_CREDENTIALS:
            return Grant.CLIENT_CREDENTIALS
        return Grant.AUTHORIZATION_CODE
