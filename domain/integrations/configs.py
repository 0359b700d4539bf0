"""Integration configs: where bills go, for which accounts, and how they are mapped.

The options follow the product's Chargebee bill integration one for one (see the README's
"Integration configs" section).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import JSON, Column, Session, SQLModel, col, select
from sqlmodel import Field as TableField

from domain.accounts import Account, filter_view
from domain.bills import LineItemType
from domain.clock import utcnow
from domain.errors import InvalidInput
from domain.expressions import ExpressionError, Node, evaluate, parse
from domain.ids import new_id
from domain.integrations.errors import ConfigInvalid
from domain.scoping import owned


class Destination(StrEnum):
    CHARGEBEE = "chargebee"
    STRIPE = "stripe"
    PADDLE = "paddle"
    NETSUITE = "netsuite"
    XERO = "xero"
    QUICKBOOKS = "quickbooks"
    WEBHOOK = "webhook"


SUPPORTED_DESTINATIONS = frozenset({Destination.CHARGEBEE})


class EntityType(StrEnum):
    BILL = "bill"


class SplitUsage(StrEnum):
    PER_BAND = "per_band"
    PER_PRODUCT = "per_product"


class SortBy(StrEnum):
    NONE = "none"
    SUBTOTAL = "subtotal"
    AGGREGATION_ID = "aggregation_id"


class EntityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only_send_on_approval: bool = False
    use_external_mapping_account_code: bool = False
    excluded_line_item_types: list[LineItemType] = Field(default_factory=list)
    account_filter: str | None = Field(None, max_length=2000)
    enforce_external_mappings_for_config: bool = False

    @field_validator("account_filter")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            try:
                parse(value)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
            return value
        return None


class ChargebeeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minimum_spend_item_price_id: str | None = Field(None, max_length=100)
    standing_charge_item_price_id: str | None = Field(None, max_length=100)
    create_invoice: bool = False
    use_multidecimal: bool = False
    multidecimal_price_places: int = Field(4, ge=0, le=10)
    multidecimal_units_places: int = Field(4, ge=0, le=10)
    split_usage_line_items: SplitUsage = SplitUsage.PER_BAND
    default_price_id: str | None = Field(None, max_length=100)
    price_id_mapping: dict[LineItemType, str] = Field(default_factory=dict)
    sort_line_items_by: SortBy = SortBy.NONE


class IntegrationConfig(SQLModel, table=True):
    __tablename__ = "integration_config"

    id: str = TableField(default_factory=lambda: new_id("int"), primary_key=True, max_length=40)
    org_id: str = TableField(foreign_key="organisation.id", index=True, max_length=40)
    name: str = TableField(max_length=200)
    destination: str = TableField(max_length=32)
    entity_type: str = TableField(default=EntityType.BILL, max_length=32)
    account_ids: list[str] = TableField(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    restricted_account_ids: list[str] = TableField(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    disabled_notification_user_ids: list[str] = TableField(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    entity_config: dict[str, Any] = TableField(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    destination_config: dict[str, Any] = TableField(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    credential_id: str | None = TableField(default=None, foreign_key="credential.id", max_length=40)
    enabled: bool = True
    consecutive_errors: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str | None = TableField(default=None, max_length=500)
    created_at: datetime = TableField(default_factory=utcnow)
    updated_at: datetime = TableField(default_factory=utcnow)

    @property
    def entity(self) -> EntityConfig:
        return EntityConfig.model_validate(self.entity_config)

    @property
    def chargebee(self) -> ChargebeeConfig:
        return ChargebeeConfig.model_validate(self.destination_config)

    @property
    def connected(self) -> bool:
        return self.credential_id is not None


def check_destination(
    destination: Destination, destination_config: dict[str, Any]
) -> dict[str, Any]:
    """Validate the destination's own options; returns them with defaults filled in."""
    if destination not in SUPPORTED_DESTINATIONS:
        supported = ", ".join(sorted(SUPPORTED_DESTINATIONS))
        raise InvalidInput(
            f"destination {destination!r} is not available yet (supported: {supported})"
        )
    return ChargebeeConfig.model_validate(destination_config).model_dump(mode="json")


def get_config(session: Session, org_id: str, config_id: str) -> IntegrationConfig:
    return owned(session, IntegrationConfig, org_id, config_id, "integration config")


def list_configs(session: Session, org_id: str) -> list[IntegrationConfig]:
    statement = select(IntegrationConfig).where(IntegrationConfig.org_id == org_id)
    return list(session.exec(statement.order_by(col(IntegrationConfig.id))))


def account_filter(config: IntegrationConfig) -> Node | None:
    """The config's filter, parsed; None when it has none. A stored filter that cannot be
    parsed (saved before the parser's bounds, or written around the API) raises
    ``ConfigInvalid``: that config's runs end in ``integration.validation.error``."""
    source = config.entity_config.get("account_filter")
    if source is None or (isinstance(source, str) and not source.strip()):
        return None
    if not isinstance(source, str):
        raise ConfigInvalid(f"integration {config.name!r}: the account filter is not text")
    try:
        return parse(source)
    except ExpressionError as exc:
        raise ConfigInvalid(
            f"integration {config.name!r}: the account filter cannot be used: {exc}"
        ) from None


def applies_to(config: IntegrationConfig, account: Account) -> bool:
    """Whether the config runs for this account: allow list, deny list, then the filter.
    Raises ``ConfigInvalid`` when the filter cannot be parsed or evaluated, so that the
    caller fails this config alone."""
    if config.account_ids and account.id not in config.account_ids:
        return False
    if account.id in config.restricted_account_ids:
        return False
    node = account_filter(config)
    if node is None:
        return True
    try:
        return evaluate(node, filter_view(account))
    except Exception as exc:  # evaluation is pure: whatever it raises is the filter's fault
        raise ConfigInvalid(
            f"integration {config.name!r}: the account filter cannot be evaluated for "
            f"account {account.id}: {type(exc).__name__}"
        ) from exc


def runs_on(config: IntegrationConfig, trigger: str) -> bool:
    """Bills go out on every generation unless the config waits for approval; on approval
    every config runs (for one that already sent this version, the run changes nothing).
    Reads the stored option directly, so a config whose other options no longer validate
    still gets its run (which then ends in its error) instead of stopping the others."""
    if trigger == "bill.approved":
        return True
    waits = config.entity_config.get("only_send_on_approval") is True
    return trigger == "bill.generated" and not waits
