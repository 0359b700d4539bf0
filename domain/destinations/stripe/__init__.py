"""Stripe: a draft invoice per bill (``invoicing``), or pending invoice items that Stripe
puts on the customer's next invoice (``subscription_invoicing``). The performer is
``workers.destinations.stripe``."""

from domain.destinations.spec import DestinationSpec
from domain.destinations.stripe.items import stripe_items
from domain.destinations.stripe.options import StripeConfig, StripeCredential, StripeMode

STRIPE = DestinationSpec(
    name="stripe",
    title="Stripe",
    options=StripeConfig,
    credential=StripeCredential,
    product_table="price",
    items=stripe_items,
    limits={"requests": "25/second per endpoint"},
)

__all__ = ["STRIPE", "StripeConfig", "StripeCredential", "StripeMode"]
