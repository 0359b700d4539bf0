"""Integration runs: one per (bill event, matching config), each a record with a status.

``bill.generated`` / ``bill.approved`` → ``start_runs`` creates a run for every config
that applies and appends ``integration.run.requested`` for it; processing that event
performs the run (``workers.destinations.runner`` hands it to the destination's
plug-in), with the spine's retries, leases and dead letters. A run that completes logs
``integration.run.completed``; one that ends in error logs the error event its error
class names.

    WAITING → STARTED → COMPLETE                      (integration.run.completed)
                     ↘ AWAITING_RETRY → STARTED ...
                     ↘ ERROR | AUTH_FAILED            (an integration.*.error event)
    DISABLED: the config was disabled; the run is held, not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, Text, col, select, update

from domain.accounts import Account, get_account
from domain.bills import Bill, get_bill
from domain.catalogue import RunCompletedFields
from domain.clock import utcnow
from domain.destinations.pieces import BillToMap
from domain.destinations.registry import DESTINATIONS, destination, options_for_run
from domain.destinations.spec import (
    ApiKeyCredential,
    BillOwner,
    CredentialFields,
    DestinationOptions,
    DestinationSpec,
    RemoteItem,
)
from domain.errors import InvalidInput, TransientError
from domain.eventlog import INTERNAL_PROVIDER, append_internal
from domain.failures import count_failure, count_success
from domain.handlers import InboundEvent, registry
from domain.ids import new_id
from domain.integrations.configs import IntegrationConfig, applies_to, get_config
from domain.integrations.credentials import get_credential, open_credential
from domain.integrations.errors import (
    AuthenticationFailed,
    ConfigInvalid,
    IntegrationError,
)
from domain.integrations.sync import BillSync
from domain.logs import describe_error
from domain.mappings import MappedEntity, external_id_for
from domain.retry import Decision, Retry
from domain.scoping import owned
from domain.secrets import SecretBox
from domain.subscriptions.projection import AccountPlan

RUN_REQUESTED = "integration.run.requested"
RUN_COMPLETED = "integration.run.completed"

log = structlog.get_logger(__name__)


class RunStatus(StrEnum):
    WAITING = "WAITING"
    STARTED = "STARTED"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    AWAITING_RETRY = "AWAITING_RETRY"
    AUTH_FAILED = "AUTH_FAILED"
    DISABLED = "DISABLED"


class IntegrationRun(SQLModel, table=True):
    __tablename__ = "integration_run"
    __table_args__ = (
        sa.Index("ix_integration_run_config", "org_id", "config_id", "id"),
        sa.Index("ix_integration_run_bill", "org_id", "bill_id"),
    )

    id: str = Field(default_factory=lambda: new_id("run"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    config_id: str = Field(foreign_key="integration_config.id", max_length=40)
    bill_id: str = Field(foreign_key="bill.id", max_length=40)
    trigger: str = Field(max_length=32)
    trigger_event_id: str = Field(max_length=40)
    request_event_id: str | None = Field(default=None, max_length=40)
    status: str = Field(default=RunStatus.WAITING, max_length=16)
    attempts: int = 0
    bill_version: int | None = None
    invoice_id: str | None = Field(default=None, max_length=100)
    items_added: int = 0
    items_removed: int = 0
    error_type: str | None = Field(default=None, max_length=100)
    error_message: str | None = Field(default=None, sa_type=Text)
    error_event_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


@registry.register(INTERNAL_PROVIDER, "bill.generated", name="integrations.start_runs")
@registry.register(INTERNAL_PROVIDER, "bill.approved", name="integrations.start_runs_on_approval")
def start_runs(session: Session, event: InboundEvent) -> None:
    bill = get_bill(session, event.org_id, event.payload["bill_id"])
    account = get_account(session, event.org_id, bill.account_id)
    configs = session.exec(
        select(IntegrationConfig)
        .where(IntegrationConfig.org_id == event.org_id, IntegrationConfig.entity_type == "bill")
        .order_by(col(IntegrationConfig.id))
    )
    for config in configs:
        if not runs_on(config, event.type):
            continue
        try:
            applies = applies_to(config, account)
        except ConfigInvalid as exc:
            # One config's broken filter fails that config alone: it gets its run, which
            # ends in integration.validation.error (prepare raises the same error), and
            # every other config of the organisation still runs for the bill.
            log.warning("integration.filter_unusable", config_id=config.id, reason=str(exc))
            applies = True
        if applies:
            _start_run(session, event, config, bill)


def runs_on(config: IntegrationConfig, trigger: str) -> bool:
    """Bills go out on every generation unless the config waits for approval (or its
    destination takes approved bills only); on approval every config runs (for one that
    already sent this version, the run changes nothing). Reads the stored option directly,
    so a config whose other options no longer validate still gets its run (which then ends
    in its error) instead of stopping the others."""
    if trigger == "bill.approved":
        return True
    spec = DESTINATIONS.get(config.destination)
    waits = config.entity_config.get("only_send_on_approval") is True or (
        spec is not None and not spec.sends_before_approval
    )
    return trigger == "bill.generated" and not waits


def _start_run(
    session: Session, event: InboundEvent, config: IntegrationConfig, bill: Bill
) -> None:
    run = IntegrationRun(
        org_id=event.org_id,
        config_id=config.id,
        bill_id=bill.id,
        trigger=event.type,
        trigger_event_id=event.id,
        status=RunStatus.WAITING if config.enabled else RunStatus.DISABLED,
    )
    session.add(run)
    session.flush()
    if config.enabled:
        request = append_internal(
            session,
            org_id=event.org_id,
            type=RUN_REQUESTED,
            payload={"run_id": run.id, "config_id": config.id, "bill_id": bill.id},
            caused_by=event.id,
        )
        run.request_event_id = request.id
        session.add(run)


#: The item type of one destination (its ``DestinationSpec.items`` makes them).
ItemT = TypeVar("ItemT", bound=RemoteItem)


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs, loaded and decided before any call to the destination."""

    run_id: str
    org_id: str
    config_id: str
    bill_id: str
    bill_version: int
    trigger: str
    destination: str
    #: The remote object the bill goes to: a customer (Chargebee, Stripe) or a
    #: subscription (Paddle).
    customer_id: str
    #: The credential that connects the run, and the remote account that numbers its
    #: documents (``DestinationSpec.scope``): with ``org_id`` and a document id, the site
    #: names a document (Chargebee's invoice ids repeat across sites).
    credential_id: str
    site: str
    credential: CredentialFields
    options: DestinationOptions
    currency: str
    items: Sequence[RemoteItem]
    #: Other remote objects the run needs, by name (``DestinationSpec.related``).
    related: Mapping[str, str] = field(default_factory=dict)
    period_start: date | None = None
    period_end: date | None = None
    #: The remote organisation the credential connected to (a Xero tenant, a QuickBooks
    #: realm); None for credentials that reach one account by their key.
    tenant_id: str | None = None

    def items_as(self, kind: type[ItemT]) -> list[ItemT]:
        """The items, as the destination's own item type (its spec made them so)."""
        items = [item for item in self.items if isinstance(item, kind)]
        assert len(items) == len(self.items), {type(item) for item in self.items}
        return items

    @property
    def api_key(self) -> str:
        """The key of an ``ApiKeyCredential``."""
        assert isinstance(self.credential, ApiKeyCredential), type(self.credential)
        return self.credential.api_key.get_secret_value()


def prepare(session: Session, box: SecretBox, run_id: str, attempt: int) -> Prepared | None:
    """Mark the run started and work out what to send. None: nothing to send now, the
    config being disabled (the run is held) or the run already COMPLETE. Raises the run's
    ``IntegrationError`` when it cannot go out."""
    run = session.get(IntegrationRun, run_id)
    assert run is not None, run_id
    if run.status == RunStatus.COMPLETE:
        # A worker whose lease ran out, come back after another finished the run: its own
        # processing will be fenced out, and the run must not look started again.
        return None
    config = get_config(session, run.org_id, run.config_id)
    if not config.enabled:
        run.status = RunStatus.DISABLED
        session.add(run)
        return None
    run.status, run.attempts, run.started_at = RunStatus.STARTED, attempt, utcnow()
    session.add(run)
    spec = _spec(config)
    if config.credential_id is None:
        raise AuthenticationFailed(
            f"integration {config.name!r} is not connected: attach a {spec.title} credential"
        )
    credential = get_credential(session, run.org_id, config.credential_id)
    bill = get_bill(session, run.org_id, run.bill_id)
    account = get_account(session, run.org_id, bill.account_id)
    applies_to(config, account)  # a filter that cannot be used raises ConfigInvalid here
    entity = config.entity
    options = options_for_run(spec.name, config.destination_config)
    lookup = _lookup(session, config, spec)
    lines = bill.lines()
    product_prices = {
        product: price
        for product in {line.product_id for line in lines if line.product_id}
        if (price := lookup(MappedEntity.PRODUCT, product, spec.product_table))
    }
    items = spec.items(
        BillToMap(bill.currency, bill.period_start, bill.period_end, lines),
        entity,
        options,
        product_prices,
    )
    fields = open_credential(box, credential)
    owner = _owner(session, account, bill)
    return Prepared(
        run_id=run.id,
        org_id=run.org_id,
        config_id=config.id,
        bill_id=bill.id,
        bill_version=bill.version,
        trigger=run.trigger,
        destination=spec.name,
        customer_id=spec.target(spec, lookup, owner, entity),
        credential_id=credential.id,
        site=spec.scope(fields, credential.tenant_id),
        credential=fields,
        options=options,
        currency=bill.currency,
        items=items,
        related=spec.related(spec, lookup, owner, entity, options),
        period_start=bill.period_start,
        period_end=bill.period_end,
        tenant_id=credential.tenant_id,
    )


def _owner(session: Session, account: Account, bill: Bill) -> BillOwner:
    """The bill's account and the account's plans over the bill's period, newest first."""
    period_start = datetime.combine(bill.period_start, time.min, tzinfo=UTC)
    period_end = datetime.combine(bill.period_end, time.min, tzinfo=UTC)
    plans = session.exec(
        select(AccountPlan.id)
        .where(
            AccountPlan.org_id == account.org_id,
            AccountPlan.account_id == account.id,
            sa.or_(col(AccountPlan.start_at).is_(None), col(AccountPlan.start_at) < period_end),
            sa.or_(col(AccountPlan.end_at).is_(None), col(AccountPlan.end_at) > period_start),
        )
        .order_by(col(AccountPlan.start_at).desc().nulls_last(), col(AccountPlan.id).desc())
    )
    return BillOwner(account=account, bill=bill, plan_ids=list(plans))


def _spec(config: IntegrationConfig) -> DestinationSpec:
    try:
        return destination(config.destination)
    except InvalidInput as exc:
        raise ConfigInvalid(f"integration {config.name!r}: {exc}") from None


def _lookup(
    session: Session, config: IntegrationConfig, spec: DestinationSpec
) -> Callable[[str, str, str], str | None]:
    """External mappings as the config sees them: to its destination, tied to the config
    first, and only tied ones when it enforces that."""

    def lookup(entity: str, entity_id: str, table: str) -> str | None:
        return external_id_for(
            session,
            config.org_id,
            entity=entity,
            entity_id=entity_id,
            system=spec.name,
            table=table,
            config_id=config.id,
            config_only=config.entity.enforce_external_mappings_for_config,
        )

    return lookup


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a performer reports: the document that holds the bill (None: none now)."""

    invoice_id: str | None
    items_added: int
    items_removed: int
    bill_version: int


def acquire_bill(session: Session, prepared: Prepared, lease_seconds: float) -> BillSync:
    """Serialise runs of one (config, bill): another live run makes this one wait."""
    now = utcnow()
    try:
        with session.begin_nested():
            session.add(
                BillSync(
                    config_id=prepared.config_id, bill_id=prepared.bill_id, org_id=prepared.org_id
                )
            )
    except IntegrityError:
        pass
    taken = session.exec(
        update(BillSync)
        .where(
            col(BillSync.config_id) == prepared.config_id,
            col(BillSync.bill_id) == prepared.bill_id,
            sa.or_(
                col(BillSync.locked_by).is_(None),
                col(BillSync.locked_by) == prepared.run_id,
                col(BillSync.locked_until) < now,
            ),
        )
        .values(locked_by=prepared.run_id, locked_until=now + timedelta(seconds=lease_seconds))
    )
    if taken.rowcount != 1:
        raise TransientError("another run is sending this bill to this config", retry_after=5)
    sync = session.get(BillSync, (prepared.config_id, prepared.bill_id), populate_existing=True)
    assert sync is not None
    return sync


def release_bill(session: Session, run_id: str) -> None:
    session.exec(
        update(BillSync)
        .where(col(BillSync.locked_by) == run_id)
        .values(locked_by=None, locked_until=None)
    )


def complete(session: Session, run_id: str, **results: Any) -> None:
    """Mark the run COMPLETE and log ``integration.run.completed``, in the transaction of
    the handler of its ``integration.run.requested``: the ledger row committed with it
    keeps a redelivered or concurrent attempt from completing it (and logging) again."""
    run = session.get(IntegrationRun, run_id)
    assert run is not None
    already = run.status == RunStatus.COMPLETE
    for name, value in results.items():
        setattr(run, name, value)
    run.status, run.finished_at = RunStatus.COMPLETE, utcnow()
    run.error_type = run.error_message = None
    session.add(run)
    release_bill(session, run_id)
    count_success(session, IntegrationConfig, run.config_id)
    if not already:
        _log_completed(session, run)


def _log_completed(session: Session, run: IntegrationRun) -> None:
    config = session.get(IntegrationConfig, run.config_id)
    assert config is not None
    assert run.bill_version is not None
    assert run.finished_at is not None
    payload = RunCompletedFields(
        run_id=run.id,
        config_id=run.config_id,
        destination=config.destination,
        bill_id=run.bill_id,
        bill_version=run.bill_version,
        trigger=run.trigger,
        invoice_id=run.invoice_id,
        items_added=run.items_added,
        items_removed=run.items_removed,
        attempts=run.attempts,
        finished_at=run.finished_at,
    )
    append_internal(
        session,
        org_id=run.org_id,
        type=RUN_COMPLETED,
        payload=payload.model_dump(mode="json"),
        caused_by=run.request_event_id,
    )


@registry.on_failure(INTERNAL_PROVIDER, RUN_REQUESTED)
def record_run_failure(
    session: Session, event: InboundEvent, error: BaseException, decision: Decision
) -> None:
    """A retry leaves the run AWAITING_RETRY and logs nothing yet (only finished runs
    count); a run that gives up ends ERROR or AUTH_FAILED with its error event."""
    run = session.get(IntegrationRun, event.payload["run_id"])
    if run is None:
        return
    release_bill(session, run.id)
    message = str(error) if isinstance(error, IntegrationError) else describe_error(error)
    run.error_message = message[:2000]  # a SQL error without its parameters
    if isinstance(decision, Retry):
        run.status = RunStatus.AWAITING_RETRY
        session.add(run)
        return
    event_type = (
        error.event_type if isinstance(error, IntegrationError) else "integration.perform.error"
    )
    run.status = (
        RunStatus.AUTH_FAILED if isinstance(error, AuthenticationFailed) else RunStatus.ERROR
    )
    run.error_type, run.finished_at = event_type, utcnow()
    error_event = append_internal(
        session,
        org_id=run.org_id,
        type=event_type,
        caused_by=event.id,
        payload={
            "run_id": run.id,
            "config_id": run.config_id,
            "bill_id": run.bill_id,
            "message": run.error_message,
            "error_class": type(error).__name__,
        },
    )
    run.error_event_id = error_event.id
    session.add(run)
    count_failure(session, IntegrationConfig, run.config_id, now=utcnow(), caused_by=event.id)


@dataclass(frozen=True, slots=True)
class RunFilter:
    org_id: str
    config_id: str | None = None
    status: str | None = None
    bill_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_runs(session: Session, filt: RunFilter, *, limit: int = 100) -> list[IntegrationRun]:
    statement = select(IntegrationRun).where(IntegrationRun.org_id == filt.org_id)
    if filt.config_id:
        statement = statement.where(IntegrationRun.config_id == filt.config_id)
    if filt.status:
        statement = statement.where(IntegrationRun.status == filt.status)
    if filt.bill_id:
        statement = statement.where(IntegrationRun.bill_id == filt.bill_id)
    if filt.since:
        statement = statement.where(col(IntegrationRun.created_at) >= filt.since)
    if filt.until:
        statement = statement.where(col(IntegrationRun.created_at) < filt.until)
    return list(session.exec(statement.order_by(col(IntegrationRun.id).desc()).limit(limit)))


def get_run(session: Session, org_id: str, run_id: str) -> IntegrationRun:
    return owned(session, IntegrationRun, org_id, run_id, "integration run")


def disable_config(session: Session, config: IntegrationConfig, reason: str) -> None:
    if config.enabled:
        config.enabled, config.disabled_at, config.disabled_reason = False, utcnow(), reason
        session.add(config)


def enable_config(session: Session, config: IntegrationConfig) -> list[str]:
    """Enable the config, start its error count again, and release the runs held while
    it was disabled, oldest first. Returns the run events to publish."""
    config.enabled, config.disabled_at, config.disabled_reason = True, None, None
    config.consecutive_errors = 0
    session.add(config)
    held = session.exec(
        select(IntegrationRun)
        .where(IntegrationRun.config_id == config.id, IntegrationRun.status == RunStatus.DISABLED)
        .order_by(col(IntegrationRun.id))
    )
    released = []
    for run in held:
        request = append_internal(
            session,
            org_id=run.org_id,
            type=RUN_REQUESTED,
            payload={"run_id": run.id, "config_id": config.id, "bill_id": run.bill_id},
        )
        run.status, run.request_event_id = RunStatus.WAITING, request.id
        session.add(run)
        released.append(request.id)
    return released
