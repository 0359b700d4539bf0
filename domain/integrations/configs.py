"""Integration configs: where bills go, for which accounts, and how they are mapped.

The entity options here are every destination's; a destination's own options
(``destination_config``) are its plug-in's model (``domain.destinations``). See the
README's "Integration configs" section.
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


class EntityType(StrEnum):
    BILL = "bill"


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
    def connected(self) -> bool:
        return self.credential_id is not None


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
