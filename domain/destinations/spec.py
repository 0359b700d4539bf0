"""What a destination plug-in declares, and the shape of the items it sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from domain.accounts import Account
from domain.bills import Bill
from domain.destinations.pieces import BillToMap, LineOptions
from domain.destinations.pricing import PriceOptions
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import MissingAccountMapping
from domain.mappings import MappedEntity


class DestinationOptions(PriceOptions, LineOptions):
    """Options every destination has: the price choice and how lines become pieces."""

    model_config = ConfigDict(extra="forbid")


class Grant(StrEnum):
    """How a credential gets meterbridge into the destination."""

    #: A key sent with every call (Chargebee, Stripe, Paddle).
    API_KEY = "api_key"
    #: OAuth 2.0 authorization code: a person consents in the browser
    #: (``GET /api/v1/credentials/{id}/authorize``); refresh tokens keep it connected.
    AUTHORIZATION_CODE = "authorization_code"
    #: OAuth 2.0 client credentials, machine to machine: a token from the credential's
    #: own secret, fetched again when it expires (Xero Custom Connections, NetSuite M2M).
    CLIENT_CREDENTIALS = "client_credentials"
    #: OAuth 1.0a request signing with a token that does not expire (NetSuite TBA).
    SIGNED_REQUESTS = "signed_requests"


class CredentialFields(BaseModel):
    """A destination's credential as entered. Its ``SecretStr`` fields are its secrets:
    stored encrypted, together, and never shown; every other field is public and kept in
    the credential's ``options``."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def secret_names(cls) -> tuple[str, ...]:
        return tuple(
            name
            for name, info in cls.model_fields.items()
            if SecretStr in (info.annotation, *get_args(info.annotation))
        )

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.secret_names()))

    def secrets(self) -> dict[str, str]:
        values = ((name, getattr(self, name)) for name in self.secret_names())
        return {name: value.get_secret_value() for name, value in values if value is not None}

    @property
    def grant(self) -> Grant:
        return Grant.API_KEY


class ApiKeyCredential(CredentialFields):
    """A credential that is one API key."""

    api_key: SecretStr = Field(min_length=1, max_length=500, description="Stored encrypted.")


class RemoteItem(Protocol):
    """One item a run puts on the remote side, as the shared ledger records it."""

    @property
    def key(self) -> str:
        """Stable within the bill: which piece of the bill this is."""

    @property
    def item_price_id(self) -> str:
        """The remote price it goes out at; empty when priced by amount."""

    @property
    def fingerprint(self) -> str:
        """What the remote line must look like; equal fingerprints are interchangeable."""

    def form(self) -> dict[str, str]:
        """The request fields that create it, recorded before it is sent."""


#: Looks up an external mapping for the run's config: (entity, entity id, table) → id.
Lookup = Callable[[str, str, str], str | None]
#: The items a bill needs: (bill, entity config, the destination's options, product id →
#: mapped price id).
ItemsFor = Callable[[BillToMap, EntityConfig, Any, Mapping[str, str]], Sequence[RemoteItem]]


@dataclass(frozen=True)
class BillOwner:
    """Who a bill is for: its account, and the account's plans over the bill's period
    (ids, newest first)."""

    account: Account
    bill: Bill
    plan_ids: Sequence[str] = ()


#: The remote object a bill goes to (a customer, a subscription); raises
#: ``MissingAccountMapping`` when there is none.
TargetFor = Callable[["DestinationSpec", Lookup, BillOwner, EntityConfig], str]


def customer_target(
    spec: DestinationSpec, lookup: Lookup, owner: BillOwner, entity: EntityConfig
) -> str:
    """The account's customer: its external mapping (``account`` → ``<destination>`` /
    ``<customer_table>``) when the config says so, else its code (accounts made from a
    provider's webhooks carry the customer id as code)."""
    account = owner.account
    if not entity.use_external_mapping_account_code:
        return account.code
    customer = lookup(MappedEntity.ACCOUNT, account.id, spec.customer_table)
    if customer is None:
        raise MissingAccountMapping(
            f"account {account.code} ({account.id}) has no external mapping to a "
            f"{spec.title} {spec.customer_table} (account → {spec.name}/{spec.customer_table})"
        )
    return customer


#: Further remote objects a run needs besides its target, by name (Stripe's
#: ``subscription``), found with the run's mappings and the destination's options; raises
#: ``MissingAccountMapping`` when one the options ask for has no mapping.
RelatedFor = Callable[["DestinationSpec", Lookup, BillOwner, EntityConfig, Any], Mapping[str, str]]


def nothing_related(
    spec: DestinationSpec, lookup: Lookup, owner: BillOwner, entity: EntityConfig, options: Any
) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class DestinationSpec:
    name: str
    title: str
    options: type[DestinationOptions]
    credential: type[CredentialFields]
    #: The external mapping table a product's price is found in (``product`` → this).
    product_table: str
    items: ItemsFor
    target: TargetFor = customer_target
    related: RelatedFor = nothing_related
    #: False: bills go out on approval only, whatever ``only_send_on_approval`` says.
    sends_before_approval: bool = True
    #: Default rate limits, e.g. ``{"requests": "25/second"}``; a credential may set its own.
    limits: Mapping[str, str] = field(default_factory=dict)
    #: The external mapping table an account's remote customer is found in (``account`` →
    #: this): Xero calls it a contact.
    customer_table: str = "customer"
    #: Default caps on calls in flight at once, e.g. ``{"per tenant": 5}``.
    concurrency: Mapping[str, int] = field(default_factory=dict)

    def scope(self, credential: CredentialFields, tenant_id: str | None = None) -> str:
        """The remote account that numbers the documents a run writes: the tenant the
        credential connected to (``<name>:<tenant>``: a QuickBooks company numbers its own
        invoices), a Chargebee site, a NetSuite account; for destinations with globally
        unique ids, the destination's name."""
        if tenant_id:
            return f"{self.name}:{tenant_id}"
        site = getattr(credential, "site", None)
        return site if isinstance(site, str) and site else self.name
