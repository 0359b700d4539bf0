"""Which Stripe subscription pending items go to: the account's mapping, when asked."""

from __future__ import annotations

from datetime import date

import pytest

from domain.accounts import Account
from domain.bills import Bill
from domain.destinations.spec import BillOwner
from domain.destinations.stripe import STRIPE, StripeConfig
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import MissingAccountMapping

OWNER = BillOwner(
    account=Account(id="acc_1", org_id="org_1", code="cus_1", name="Initech"),
    bill=Bill(
        id="bill_1",
        org_id="org_1",
        account_id="acc_1",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 12, 1),
        currency="USD",
    ),
)
MAPPED = {("account", "acc_1", "subscription"): "sub_1"}


def related(mappings: dict[tuple[str, str, str], str], **options: object) -> dict[str, str]:
    def lookup(entity: str, entity_id: str, table: str) -> str | None:
        return mappings.get((entity, entity_id, table))

    config = StripeConfig.model_validate(options)
    return dict(STRIPE.related(STRIPE, lookup, OWNER, EntityConfig(), config))


def test_use_subscription_sends_pending_items_to_the_accounts_mapped_subscription() -> None:
    assert related(MAPPED, stripe_mode="subscription_invoicing", use_subscription=True) == {
        "subscription": "sub_1"
    }


def test_without_use_subscription_or_in_invoicing_mode_there_is_none() -> None:
    assert related(MAPPED, stripe_mode="subscription_invoicing") == {}
    assert related(MAPPED, stripe_mode="invoicing", use_subscription=True) == {}


def test_use_subscription_without_a_mapping_is_a_missing_account_mapping() -> None:
    with pytest.raises(MissingAccountMapping, match="account → stripe/subscription"):
        related({}, stripe_mode="subscription_invoicing", use_subscription=True)
