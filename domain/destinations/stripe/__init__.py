"""Stripe: a draft invoice per bill (``invoicing``), or pending invoice items that Stripe
puts on the customer's next invoice (``subscription_invoicing``). The performer is
``workers.destinations.stripe``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.destinations.spec import BillOwner, DestinationSpec, Lookup
from domain.destinations.stripe.items import stripe_items
from domain.destinations.stripe.options import StripeConfig, StripeCredential, StripeMode
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import MissingAccountMapping
from domain.mappings import MappedEntity


def stripe_subscription(
    spec: DestinationSpec, lookup: Lookup, owner: BillOwner, _entity: EntityConfig, options: Any
) -> Mapping[str, str]:
    """With ``use_subscription`` (subscription invoicing), the Stripe subscription the
    pending items belong to: the account's external mapping (``account`` →
    ``stripe``/``subscription``)."""
    assert isinstance(options, StripeConfig), type(options)
    if options.stripe_mode != StripeMode.SUBSCRIPTION_INVOICING or not options.use_subscription:
        return {}
    account = owner.account
    subscription = lookup(MappedEntity.ACCOUNT, account.id, "subscription")
    if subscription is None:
        raise MissingAccountMapping(
            f"account {account.code} ({account.id}) has no external mapping to a "
            f"{spec.title} subscription (account → stripe/subscription), which "
            "use_subscription needs"
        )
    return {"subscription": subscription}


STRIPE = DestinationSpec(
    name="stripe",
    title="Stripe",
    options=StripeConfig,
    credential=StripeCredential,
    product_table="price",
    items=stripe_items,
    related=stripe_subscription,
    limits={"requests per endpoint": "25/second"},
)

__all__ = ["STRIPE", "StripeConfig", "StripeCredential", "StripeMode"]
