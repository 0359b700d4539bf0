"""Paddle's performer: an approved bill as one-time charges on the customer's Paddle
subscription (``POST /subscriptions/{id}/charge``), charged once and never twice.

    settle lost charges → plan → per ≤100 items: take turns → record ``adding`` → charge
                                                   → record ``added``

**Every line goes as a non-catalog price.** Paddle has no idempotency key, and a charge
answers with the subscription, not the charge; a charge carries no ``custom_data`` of its
own, but a non-catalog price does, and Paddle keeps it on the price it makes. So every item
is sent as a non-catalog price whose ``custom_data`` names it::

    {"meterbridge_bill": bill id, "meterbridge_version": version,
     "meterbridge_item": item key, "meterbridge_config": config id}

(the config, because two configs may charge one bill to one subscription). A line that the
mapping gives a catalog price (``item_price_id``) is sent as a copy of it: the price is
fetched once per run (``GET /prices/{id}``) and its product, unit amount, currency, name,
description and tax mode go out as a non-catalog price, at the mapped quantity. A catalog
price cannot be told apart from another charge of the same price after a lost answer; its
copy can. (The copy charges the price's base amount: country overrides are not copied. A
catalog price in another currency than the bill's, or with a billing cycle, fails
validation.)

**A lost answer never charges twice.** Each charge call's items are recorded ``adding``
(the subscription as their document) before it is sent, and ``added`` after. A run that
finds ``adding`` lines (its own earlier attempt timed out, or a worker died mid-call) looks
for their ``custom_data`` on the subscription before anything else: on its transactions
(``immediately`` charges are billed at once, ``origin=subscription_charge``; a
``next_billing_period`` charge is on the ``subscription_recurring`` one once the renewal
billed it) and, for charges for the next billing period, on the preview of the next
transaction, whose lines name only the price (``GET /prices/{id}`` has its
``custom_data``). Found: recorded ``added``. Not found: forgotten, and sent again with the
rest. It looks only once the lost call is twice ``http_timeout_seconds`` old, so that a call
still being worked on at Paddle when ours gave up has landed by then. A call Paddle
answered with a refusal (429, 4xx), or that never left (no turn), is forgotten at once.

**One version, once.** Paddle's one-time charges cannot be withdrawn. A run for a version
already charged changes nothing (an approval run again, a retry after a crash). A run for
another version of a bill whose earlier version was charged ends in
``integration.perform.error`` naming both versions and the subscription, unless its
charges are exactly the earlier version's (then there is nothing to do); so does a version
charged with lines its items no longer match (the config changed since).

**Rate limits** (``workers.destinations.paddle.turns``): a turn for every request under
the credential's ``requests_per_minute``, and for ``immediately`` one for every charge
under the subscription's ``immediate_charges_per_hour``, shared by every worker process of
the deployment. A 429 pushes its key back by its ``Retry-After``, and the run waits for
its turn (``WaitForTurn``: no attempt used, no failure counted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from domain.clock import utcnow
from domain.destinations.paddle import EffectiveFrom, PaddleConfig, PaddleCredential
from domain.destinations.paddle.items import PaddleItem
from domain.destinations.paddle.options import PaddleEnvironment
from domain.errors import WaitForTurn
from domain.integrations import ledger
from domain.integrations.errors import ConfigInvalid, IntegrationError, PerformFailed
from domain.integrations.runs import Prepared, RunResult
from domain.integrations.sync import BillSync, LineState, RemoteLine, items_hash
from domain.settings import Settings
from workers.destinations.paddle.client import (
    NonCatalogItem,
    PaddleClient,
    Price,
    TooManyRequests,
)
from workers.destinations.paddle.turns import PaddleTurns
from workers.ratelimits import RateLimiter
from workers.runtime import runtime

log = structlog.get_logger(__name__)

#: Paddle takes at most this many items in one charge; a larger bill goes in several.
MAX_ITEMS_PER_CHARGE = 100
#: The ``custom_data`` every price of a charge carries.
BILL, VERSION, ITEM, CONFIG = (
    "meterbridge_bill",
    "meterbridge_version",
    "meterbridge_item",
    "meterbridge_config",
)
#: Where a one-time charge ends up billed.
CHARGE_ORIGINS = ("subscription_charge", "subscription_recurring")
#: Transactions are looked through from the lost call's record less this (clocks differ).
LOOKBACK = timedelta(hours=1)


def perform(
    engine: Engine,
    settings: Settings,
    prepared: Prepared,
    state: BillSync,
    *,
    limiter: RateLimiter | None = None,
) -> RunResult:
    """``limiter``: the worker process's (``workers.runtime``) unless given."""
    options, credential = prepared.options, prepared.credential
    assert isinstance(options, PaddleConfig), type(options)
    assert isinstance(credential, PaddleCredential), type(credential)
    turns = PaddleTurns(limiter or runtime().limiter, prepared.credential_id, credential)
    client = PaddleClient(
        api_key=prepared.api_key,
        base_url=api_base(settings, credential),
        timeout=settings.http_timeout_seconds,
        before_request=turns.request,
    )
    with client, turns.pushed_back_by_429(prepared.customer_id):
        lines = ledger.lines_of_bill(engine, prepared)
        settle_after = timedelta(seconds=2 * settings.http_timeout_seconds)
        if any(line.state == LineState.ADDING for line in lines):
            lines = _settle_lost_charges(engine, client, prepared, lines, settle_after)
        items = prepared.items_as(PaddleItem)
        charged = [line for line in lines if line.state == LineState.ADDED]
        to_send = plan_charges(prepared.bill_id, prepared.bill_version, items, charged)
        catalog = Catalog(client, prepared.currency)
        for number, start in enumerate(range(0, len(to_send), MAX_ITEMS_PER_CHARGE)):
            chunk = to_send[start : start + MAX_ITEMS_PER_CHARGE]
            _charge(engine, client, prepared, options, turns, catalog, chunk, f"{number}")
    ours = [
        line
        for line in ledger.lines_of_bill(engine, prepared)
        if line.state == LineState.ADDED and line.run_id == prepared.run_id
    ]
    # The subscription that holds the bill's charges: the target, unless they went to
    # another one before (the mapping changed since).
    documents = sorted({line.invoice_id for line in [*charged, *ours]})
    holder: str | None = documents[0] if len(documents) == 1 else prepared.customer_id
    if not items and not documents:
        holder = None
    ledger.set_invoice(
        engine,
        prepared,
        invoice_id=holder,
        items_hash=items_hash(items),
        synced_version=prepared.bill_version,
    )
    return RunResult(holder, len(ours), 0, prepared.bill_version)


def api_base(settings: Settings, credential: PaddleCredential) -> str:
    if credential.environment == PaddleEnvironment.SANDBOX:
        return settings.paddle_sandbox_api_base
    return settings.paddle_api_base


# --- what is still to charge -----------------------------------------------------------


def plan_charges(
    bill_id: str, version: int, items: Sequence[PaddleItem], charged: Sequence[RemoteLine]
) -> list[PaddleItem]:
    """The items still to charge, given the lines already charged for the bill (``added``).
    Raises ``PerformFailed`` when Paddle holds charges of the bill that this version's
    items are not: they cannot be taken back."""
    if not charged:
        return list(items)
    wanted = {item.key: item.fingerprint for item in items}
    matching = all(wanted.get(line.item_key) == line.fingerprint for line in charged)
    versions = sorted({version_of(line) for line in charged})
    subscriptions = ", ".join(sorted({line.invoice_id for line in charged}))
    if versions == [version]:
        if not matching:
            raise PerformFailed(
                f"version {version} of bill {bill_id} is already charged to Paddle "
                f"subscription {subscriptions} with lines that differ from what the bill "
                "makes now (did the config change?); one-time charges cannot be withdrawn, "
                "so nothing more is sent: correct it in Paddle"
            )
        done = {line.item_key for line in charged}
        return [item for item in items if item.key not in done]
    if matching and {line.item_key for line in charged} == set(wanted):
        return []  # the earlier version's charges are exactly this version's
    earlier = ", ".join(str(v) for v in versions)
    raise PerformFailed(
        f"version {earlier} of bill {bill_id} is already charged to Paddle subscription "
        f"{subscriptions}; version {version} differs and is not sent: one-time charges "
        "cannot be withdrawn, so correct the difference in Paddle (a credit or an "
        "adjustment)"
    )


def version_of(line: RemoteLine) -> int:
    return int(line.form["bill_version"])


# --- charging -------------------------------------------------------------------------


def _charge(
    engine: Engine,
    client: PaddleClient,
    prepared: Prepared,
    options: PaddleConfig,
    turns: PaddleTurns,
    catalog: Catalog,
    chunk: Sequence[PaddleItem],
    number: str,
) -> None:
    """One charge call: its turn, its record, the call, the record of its answer."""
    subscription_id = prepared.customer_id
    if options.effective_from == EffectiveFrom.IMMEDIATELY:
        turns.immediate_charge(subscription_id)
    sent = [(item, non_catalog(item, prepared, catalog)) for item in chunk]
    forms = [(item, record(price, prepared, options)) for item, price in sent]
    lines = ledger.begin_write(
        engine, prepared, subscription_id, forms, key=f"{prepared.run_id}:charge:{number}"
    )
    try:
        client.charge(subscription_id, [price for _, price in sent], options.effective_from.value)
    except (WaitForTurn, TooManyRequests, IntegrationError):
        ledger.forget(engine, lines)  # never sent, or refused: nothing landed
        raise
    ledger.finish_write(engine, lines)
    log.info(
        "paddle.charged",
        run_id=prepared.run_id,
        subscription_id=subscription_id,
        items=len(lines),
        effective_from=options.effective_from.value,
    )


def non_catalog(item: PaddleItem, prepared: Prepared, catalog: Catalog) -> NonCatalogItem:
    """The item as a non-catalog price carrying its ``custom_data`` (a catalog price as a
    copy of it)."""
    custom = {
        BILL: prepared.bill_id,
        VERSION: prepared.bill_version,
        ITEM: item.key,
        CONFIG: prepared.config_id,
    }
    try:
        if item.item_price_id:
            price = catalog.price(item.item_price_id)
            return NonCatalogItem(
                description=price.description,
                amount=price.amount,
                currency_code=price.currency_code,
                product_id=price.product_id,
                quantity=item.quantity,
                name=price.name,
                tax_mode=price.tax_mode,
                custom_data=custom,
            )
        assert item.unit_amount is not None, item
        assert item.product_id is not None, item
        return NonCatalogItem(
            description=item.description,
            amount=int(item.unit_amount),
            currency_code=item.currency,
            product_id=item.product_id,
            quantity=item.quantity,
            name=item.name,
            custom_data=custom,
        )
    except ValueError as exc:
        raise ConfigInvalid(f"item {item.key} cannot go to Paddle: {exc}") from None


def record(price: NonCatalogItem, prepared: Prepared, options: PaddleConfig) -> dict[str, str]:
    """What the ledger keeps of a line: what was sent, for which version, and where it
    will show (which says where to look for it after a lost answer)."""
    return {
        "item": json.dumps(price.to_json(), sort_keys=True),
        "bill_version": str(prepared.bill_version),
        "effective_from": options.effective_from.value,
    }


@dataclass
class Catalog:
    """Catalog prices, each fetched once per run."""

    client: PaddleClient
    currency: str
    prices: dict[str, Price] = field(default_factory=dict)

    def price(self, price_id: str) -> Price:
        if price_id not in self.prices:
            price = self.client.price(price_id)
            if price.recurring:
                raise ConfigInvalid(
                    f"Paddle price {price_id} has a billing cycle: a bill is charged once, "
                    "so map its lines to one-time prices"
                )
            if price.currency_code.upper() != self.currency.upper():
                raise ConfigInvalid(
                    f"Paddle price {price_id} is in {price.currency_code}, the bill in "
                    f"{self.currency.upper()}: map its lines to a price in the bill's currency"
                )
            self.prices[price_id] = price
        return self.prices[price_id]


# --- lost answers ---------------------------------------------------------------------


def _settle_lost_charges(
    engine: Engine,
    client: PaddleClient,
    prepared: Prepared,
    lines: list[RemoteLine],
    settle_after: timedelta,
) -> list[RemoteLine]:
    """Charges recorded as sent but not as answered: ``added`` when Paddle has them,
    forgotten (to be sent again) when it has not."""
    pending = [line for line in lines if line.state == LineState.ADDING]
    youngest = max(line.created_at for line in pending)
    wait = (youngest + settle_after - utcnow()).total_seconds()
    if wait > 0:  # a call still being worked on at Paddle lands before we look
        time.sleep(wait)
    landed: set[tuple[str, str]] = set()
    for subscription_id in sorted({line.invoice_id for line in pending}):
        on_it = [line for line in pending if line.invoice_id == subscription_id]
        landed |= charged_on(
            client,
            prepared,
            subscription_id,
            since=min(line.created_at for line in on_it) - LOOKBACK,
            upcoming=any(
                line.form.get("effective_from") == EffectiveFrom.NEXT_BILLING_PERIOD
                for line in on_it
            ),
        )
    found = [line for line in pending if (str(version_of(line)), line.item_key) in landed]
    lost = [line for line in pending if line not in found]
    ledger.finish_write(engine, found)
    ledger.forget(engine, lost)
    log.info(
        "paddle.lost_charges_settled",
        run_id=prepared.run_id,
        found=len(found),
        to_send_again=len(lost),
    )
    return ledger.lines_of_bill(engine, prepared)


def charged_on(
    client: PaddleClient, prepared: Prepared, subscription_id: str, *, since: Any, upcoming: bool
) -> set[tuple[str, str]]:
    """(version, item key) of every charge of this config's bill found on the subscription:
    on its transactions created since ``since``, and with ``upcoming`` on the preview of
    its next transaction."""
    found: set[tuple[str, str]] = set()
    looked: set[str] = set()
    for transaction in client.transactions(
        subscription_id, origin=CHARGE_ORIGINS, created_from=since
    ):
        for item in transaction.items:
            looked.add(item.price.id)
            found |= _ours(prepared, item.price.custom_data)
    if upcoming:
        subscription = client.subscription(subscription_id, next_transaction=True)
        upcoming_lines = (
            subscription.next_transaction.lines if subscription.next_transaction else ()
        )
        for line in upcoming_lines:
            price_id = line.price_id
            if not price_id or price_id in looked or price_id in subscription.recurring_price_ids:
                continue
            looked.add(price_id)
            found |= _ours(prepared, client.price(price_id).custom_data)
    return found


def _ours(prepared: Prepared, custom: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    if not custom or custom.get(BILL) != prepared.bill_id:
        return set()
    if custom.get(CONFIG) != prepared.config_id:
        return set()
    return {(str(custom.get(VERSION)), str(custom.get(ITEM)))}
