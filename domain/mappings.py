"""External mappings: which object in an outside system stands for one of ours.

(entity, entity id) ↔ (system, table, external id), optionally tied to one integration
config: a config with ``enforce_external_mappings_for_config`` uses only its own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from domain.accounts import Account
from domain.clock import utcnow
from domain.errors import Conflict
from domain.ids import new_id
from domain.integrations.configs import IntegrationConfig
from domain.scoping import owned


class MappedEntity(StrEnum):
    ACCOUNT = "account"
    ACCOUNT_PLAN = "account_plan"
    PLAN = "plan"
    PRODUCT = "product"
    AGGREGATION = "aggregation"
    METER = "meter"


class ExternalMapping(SQLModel, table=True):
    __tablename__ = "external_mapping"
    __table_args__ = (
        sa.Index("ix_external_mapping_lookup", "org_id", "entity", "entity_id", "external_system"),
        sa.Index(
            "ix_external_mapping_reverse",
            "org_id",
            "external_system",
            "external_table",
            "external_id",
        ),
    )

    id: str = Field(default_factory=lambda: new_id("map"), primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=200)
    external_system: str = Field(max_length=32)
    external_table: str = Field(max_length=64)
    external_id: str = Field(max_length=255)
    integration_config_id: str | None = Field(
        default=None, foreign_key="integration_config.id", max_length=40
    )
    created_at: datetime = Field(default_factory=utcnow)


def create_mapping(
    session: Session,
    org_id: str,
    *,
    entity: str,
    entity_id: str,
    external_system: str,
    external_table: str,
    external_id: str,
    integration_config_id: str | None = None,
) -> ExternalMapping:
    """Raises ``NotFound`` when the entity (for the kinds meterbridge stores: accounts and
    account plans) or the config is not the organisation's own, exactly as for a missing
    id, so a mapping can never point at another organisation's object."""
    _check_owned(session, org_id, entity, entity_id)
    if integration_config_id is not None:
        owned(session, IntegrationConfig, org_id, integration_config_id, "integration config")
    duplicate = session.exec(
        select(ExternalMapping).where(
            ExternalMapping.org_id == org_id,
            ExternalMapping.entity == entity,
            ExternalMapping.entity_id == entity_id,
            ExternalMapping.external_system == external_system,
            ExternalMapping.external_table == external_table,
            ExternalMapping.integration_config_id == integration_config_id,
        )
    ).first()
    if duplicate is not None:
        raise Conflict(f"this mapping already exists as {duplicate.id}")
    mapping = ExternalMapping(
        org_id=org_id,
        entity=entity,
        entity_id=entity_id,
        external_system=external_system,
        external_table=external_table,
        external_id=external_id,
        integration_config_id=integration_config_id,
    )
    session.add(mapping)
    session.flush()
    return mapping


def _check_owned(session: Session, org_id: str, entity: str, entity_id: str) -> None:
    if entity == MappedEntity.ACCOUNT:
        owned(session, Account, org_id, entity_id, "account")
    elif entity == MappedEntity.ACCOUNT_PLAN:
        from domain.subscriptions.projection import AccountPlan  # imports this module

        owned(session, AccountPlan, org_id, entity_id, "account plan")
    # plans, products, aggregations and meters are named by the caller, not stored here


def get_mapping(session: Session, org_id: str, mapping_id: str) -> ExternalMapping:
    return owned(session, ExternalMapping, org_id, mapping_id, "external mapping")


def list_mappings(
    session: Session,
    org_id: str,
    *,
    entity: str | None = None,
    entity_id: str | None = None,
    external_system: str | None = None,
    integration_config_id: str | None = None,
) -> list[ExternalMapping]:
    statement = select(ExternalMapping).where(ExternalMapping.org_id == org_id)
    if entity:
        statement = statement.where(ExternalMapping.entity == entity)
    if entity_id:
        statement = statement.where(ExternalMapping.entity_id == entity_id)
    if external_system:
        statement = statement.where(ExternalMapping.external_system == external_system)
    if integration_config_id:
        statement = statement.where(ExternalMapping.integration_config_id == integration_config_id)
    return list(session.exec(statement.order_by(col(ExternalMapping.id))))


def external_id_for(
    session: Session,
    org_id: str,
    *,
    entity: str,
    entity_id: str,
    system: str,
    table: str | None = None,
    config_id: str | None = None,
    config_only: bool = False,
) -> str | None:
    """The external id of one of our objects. A mapping tied to ``config_id`` wins over an
    untied one; with ``config_only`` untied mappings are not used at all."""
    statement = select(ExternalMapping).where(
        ExternalMapping.org_id == org_id,
        ExternalMapping.entity == entity,
        ExternalMapping.entity_id == entity_id,
        ExternalMapping.external_system == system,
    )
    if table:
        statement = statement.where(ExternalMapping.external_table == table)
    candidates = list(session.exec(statement.order_by(col(ExternalMapping.id))))
    tied = [m for m in candidates if config_id and m.integration_config_id == config_id]
    if tied:
        return tied[0].external_id
    if config_only:
        return None
    untied = [m for m in candidates if m.integration_config_id is None]
    return untied[0].external_id if untied else None


def entity_for(
    session: Session, org_id: str, *, entity: str, system: str, table: str, external_id: str
) -> str | None:
    """Which of our objects an external one is mapped to (untied mappings only)."""
    statement = select(ExternalMapping.entity_id).where(
        ExternalMapping.org_id == org_id,
        ExternalMapping.external_system == system,
        ExternalMapping.external_table == table,
        ExternalMapping.external_id == external_id,
        ExternalMapping.entity == entity,
        col(ExternalMapping.integration_config_id).is_(None),
    )
    return session.exec(statement.order_by(col(ExternalMapping.id))).first()
