"""Paddle Billing: an approved bill as one-time charges on the customer's subscription.
The performer is ``workers.destinations.paddle``."""

from __future__ import annotations

from domain.destinations.paddle.items import paddle_items
from domain.destinations.paddle.options import EffectiveFrom, PaddleConfig, PaddleCredential
from domain.destinations.spec import BillOwner, DestinationSpec, Lookup
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import MissingAccountMapping
from domain.mappings import MappedEntity


def subscription_target(
    spec: DestinationSpec, lookup: Lookup, owner: BillOwner, _entity: EntityConfig
) -> str:
    """The Paddle subscription a bill is charged to: its account plan's external mapping
    (``account_plan`` → ``paddle``/``subscription``), else its account's."""
    account = owner.account
    for plan_id in owner.plan_ids:
        if subscription := lookup(MappedEntity.ACCOUNT_PLAN, plan_id, "subscription"):
            return subscription
    if subscription := lookup(MappedEntity.ACCOUNT, account.id, "subscription"):
        return subscription
    raise MissingAccountMapping(
        f"account {account.code} ({account.id}) has no external mapping to a "
        f"{spec.title} subscription (account_plan or account → paddle/subscription)"
    )


PADDLE = DestinationSpec(
    name="paddle",
    title="Paddle",
    options=PaddleConfig,
    credential=PaddleCredential,
    product_table="price",
    items=paddle_items,
    target=subscription_target,
    sends_before_approval=False,
    limits={"requests": "240/minute", "immediate charges per subscription": "20/hour"},
)

__all__ = ["PADDLE", "EffectiveFrom", "PaddleConfig", "PaddleCredential"]
