"""Stripe's options and credential. The options Stripe shares with Chargebee (the price
choice, ``split_usage_line_items``, ``sort_line_items_by``) have the same names and
behaviour; see the README's "Stripe" section."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from domain.destinations.spec import ApiKeyCredential, DestinationOptions


class StripeMode(StrEnum):
    #: The bill gets a draft invoice of its own holding one invoice item per line.
    INVOICING = "invoicing"
    #: The lines become pending invoice items on the customer; Stripe puts them on the
    #: next invoice it raises (for the subscription, when one is mapped).
    SUBSCRIPTION_INVOICING = "subscription_invoicing"


class CollectionMethod(StrEnum):
    CHARGE_AUTOMATICALLY = "charge_automatically"
    SEND_INVOICE = "send_invoice"


class StripeConfig(DestinationOptions):
    stripe_mode: StripeMode = StripeMode.INVOICING
    collection_method: CollectionMethod = CollectionMethod.CHARGE_AUTOMATICALLY
    days_until_due: int | None = Field(None, ge=0, le=730)
    #: Invoicing mode: finalize the draft when the bill is approved.
    finalize_on_approval: bool = False
    #: Subscription invoicing: attach the items to the account's Stripe subscription
    #: (external mapping ``account`` → ``stripe``/``subscription``).
    use_subscription: bool = False

    @model_validator(mode="after")
    def _due_days_for_sent_invoices(self) -> StripeConfig:
        if self.collection_method == CollectionMethod.SEND_INVOICE and self.days_until_due is None:
            raise ValueError("collection_method send_invoice needs days_until_due")
        return self


class StripeCredential(ApiKeyCredential):
    """``api_key``: a secret key (``sk_live_…``, ``sk_test_…``) or a restricted key
    (``rk_…``) with write access to invoices and invoice items."""

    requests_per_second: int = Field(
        25, ge=1, le=100, description="Shared by every worker: Stripe's per-endpoint limit."
    )
