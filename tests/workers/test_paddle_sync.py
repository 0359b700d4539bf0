"""The Paddle performer's decisions that need no Paddle: what is still to charge given
what the ledger says was charged, and which limit a 429 holds back."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import pytest

from domain.bills import LineItem
from domain.destinations.paddle import PaddleConfig, PaddleCredential
from domain.destinations.paddle.items import PaddleItem, paddle_items
from domain.destinations.pieces import BillToMap
from domain.errors import WaitForTurn
from domain.integrations.configs import EntityConfig
from domain.integrations.errors import PerformFailed
from domain.integrations.sync import LineState, RemoteLine
from domain.ratelimits import Limit
from workers.destinations.paddle.client import TooManyRequests
from workers.destinations.paddle.sync import plan_charges
from workers.destinations.paddle.turns import PaddleTurns
from workers.ratelimits import RateLimiter

SUB = "sub_01"


def items(*subtotals: str) -> list[PaddleItem]:
    lines = [
        LineItem.model_validate({"type": "USAGE", "quantity": 1, "subtotal": subtotal})
        for subtotal in subtotals
    ]
    bill = BillToMap("USD", date(2026, 10, 1), date(2026, 11, 1), lines)
    return paddle_items(bill, EntityConfig(), PaddleConfig(default_product_id="pro_1"), {})


def charged(version: int, *sent: PaddleItem) -> list[RemoteLine]:
    return [
        RemoteLine(
            org_id="org_1",
            config_id="int_1",
            bill_id="bill_1",
            invoice_id=SUB,
            run_id="run_1",
            item_key=item.key,
            item_price_id=item.item_price_id,
            fingerprint=item.fingerprint,
            state=LineState.ADDED,
            idempotency_key="run_1:charge:0",
            form={"bill_version": str(version)},
        )
        for item in sent
    ]


def test_nothing_charged_yet_sends_every_item() -> None:
    wanted = items("5", "7")
    assert plan_charges("bill_1", 1, wanted, []) == wanted


def test_a_version_charged_in_part_sends_only_the_rest() -> None:
    first, second = items("5", "7")
    assert plan_charges("bill_1", 1, [first, second], charged(1, first)) == [second]


def test_a_version_charged_whole_sends_nothing() -> None:
    wanted = items("5", "7")
    assert plan_charges("bill_1", 1, wanted, charged(1, *wanted)) == []


def test_a_new_version_after_a_charge_is_refused_naming_both_versions_and_the_subscription() -> (
    None
):
    with pytest.raises(PerformFailed) as refused:
        plan_charges("bill_1", 2, items("5", "8"), charged(1, *items("5", "7")))
    assert "version 1" in str(refused.value)
    assert "version 2" in str(refused.value)
    assert SUB in str(refused.value)


def test_a_new_version_with_the_same_charges_as_the_charged_one_sends_nothing() -> None:
    assert plan_charges("bill_1", 2, items("5", "7"), charged(1, *items("5", "7"))) == []


def test_a_version_charged_with_lines_it_no_longer_makes_is_refused() -> None:
    with pytest.raises(PerformFailed, match="differ from what the bill makes now"):
        plan_charges("bill_1", 1, items("5", "8"), charged(1, *items("5", "7")))


class Limiter:
    """Records what a run asks of the shared limiter."""

    def __init__(self) -> None:
        self.acquired: list[tuple[str, Limit, float]] = []
        self.pushed: list[tuple[str, float]] = []

    def acquire(self, key: str, limit: Limit, *, max_wait: float) -> None:
        self.acquired.append((key, limit, max_wait))

    def push_back(self, key: str, seconds: float) -> None:
        self.pushed.append((key, seconds))


def turns(limiter: Limiter, **fields: Any) -> PaddleTurns:
    credential = PaddleCredential.model_validate({"api_key": "k", **fields})
    return PaddleTurns(cast(RateLimiter, limiter), "crd_1", credential)


def test_requests_and_immediate_charges_take_turns_under_the_credentials_limits() -> None:
    limiter = Limiter()
    run = turns(limiter, requests_per_minute=100, immediate_charges_per_hour=5)
    run.immediate_charge(SUB)
    run.request("POST /subscriptions/{id}/charge")
    assert limiter.acquired == [
        ("paddle:live:sub_01:immediate-charges", Limit(5, 3600), 2.0),
        ("paddle:crd_1", Limit(100, 60), 60.0),  # the attempt has begun: it may wait longer
    ]


@pytest.mark.parametrize(
    ("code", "key"),
    [
        ("too_many_requests", "paddle:crd_1"),
        (
            "subscription_immediate_charge_hour_limit_exceeded",
            "paddle:sandbox:sub_01:immediate-charges",
        ),
    ],
)
def test_a_429_pushes_back_the_limit_it_names_and_becomes_a_wait(code: str, key: str) -> None:
    limiter = Limiter()
    run = turns(limiter, environment="sandbox")
    with pytest.raises(WaitForTurn) as waiting, run.pushed_back_by_429(SUB):
        raise TooManyRequests("429", retry_after=7, code=code)
    assert limiter.pushed == [(key, 7)]
    assert (waiting.value.retry_after, waiting.value.key) == (7, key)
