"""Paddle Billing's options and credential. The options Paddle shares with Chargebee (the
price choice, ``split_usage_line_items``, ``sort_line_items_by``) have the same names and
behaviour; see the README's "Paddle" section."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from domain.destinations.spec import ApiKeyCredential, DestinationOptions


class EffectiveFrom(StrEnum):
    #: The charges go on the subscription's next renewal transaction.
    NEXT_BILLING_PERIOD = "next_billing_period"
    #: Paddle bills them now, in a transaction of their own (20 an hour per subscription).
    IMMEDIATELY = "immediately"


class PaddleEnvironment(StrEnum):
    LIVE = "live"
    SANDBOX = "sandbox"


class PaddleConfig(DestinationOptions):
    effective_from: EffectiveFrom = EffectiveFrom.NEXT_BILLING_PERIOD
    #: The Paddle product (``pro_…``) of lines sent at a non-catalog price, when no
    #: catalog price applies.
    default_product_id: str | None = Field(None, max_length=50)


class PaddleCredential(ApiKeyCredential):
    """``api_key``: a Paddle Billing API key with write access to subscriptions."""

    environment: PaddleEnvironment = PaddleEnvironment.LIVE
    requests_per_minute: int = Field(240, ge=1, le=240, description="Paddle's limit per client.")
    immediate_charges_per_hour: int = Field(
        20, ge=1, le=20, description="Paddle's limit per subscription."
    )
