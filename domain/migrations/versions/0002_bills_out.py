"""bills out: users, accounts, external mappings, credentials, integration configs,
bills, integration runs, Chargebee sync state; event follow-ups and actioned marks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("code", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("address", sa.JSON(), nullable=False),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "code", name="uq_account_org_code"),
    )
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_org_id"), ["org_id"], unique=False)

    op.create_table(
        "credential",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("api_key_ciphertext", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credential_org_id"), ["org_id"], unique=False)

    op.create_table(
        "user",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "email", name="uq_user_org_email"),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_org_id"), ["org_id"], unique=False)

    op.create_table(
        "bill",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("line_items", sa.JSON(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "org_id", "account_id", "period_start", "period_end", name="uq_bill_account_period"
        ),
    )
    with op.batch_alter_table("bill", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bill_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bill_org_id"), ["org_id"], unique=False)

    op.create_table(
        "integration_config",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("account_ids", sa.JSON(), nullable=False),
        sa.Column("restricted_account_ids", sa.JSON(), nullable=False),
        sa.Column("disabled_notification_user_ids", sa.JSON(), nullable=False),
        sa.Column("entity_config", sa.JSON(), nullable=False),
        sa.Column("destination_config", sa.JSON(), nullable=False),
        sa.Column("credential_id", sa.String(40), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credential.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("integration_config", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_integration_config_org_id"), ["org_id"], unique=False)

    op.create_table(
        "bill_sync",
        sa.Column("config_id", sa.String(40), nullable=False),
        sa.Column("bill_id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("invoice_id", sa.String(100), nullable=True),
        sa.Column("items_hash", sa.String(64), nullable=True),
        sa.Column("pending_key", sa.String(100), nullable=True),
        sa.Column("locked_by", sa.String(40), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_version", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bill_id"],
            ["bill.id"],
        ),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["integration_config.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("config_id", "bill_id"),
    )
    op.create_table(
        "chargebee_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("config_id", sa.String(40), nullable=False),
        sa.Column("bill_id", sa.String(40), nullable=False),
        sa.Column("invoice_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("item_price_id", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("line_item_id", sa.String(100), nullable=True),
        sa.Column("ids_before", sa.JSON(), nullable=False),
        sa.Column("form", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bill_id"],
            ["bill.id"],
        ),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["integration_config.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chargebee_line", schema=None) as batch_op:
        batch_op.create_index("ix_chargebee_line_bill", ["config_id", "bill_id"], unique=False)

    op.create_table(
        "external_mapping",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("external_system", sa.String(32), nullable=False),
        sa.Column("external_table", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("integration_config_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["integration_config_id"],
            ["integration_config.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("external_mapping", schema=None) as batch_op:
        batch_op.create_index(
            "ix_external_mapping_lookup",
            ["org_id", "entity", "entity_id", "external_system"],
            unique=False,
        )
        batch_op.create_index(
            "ix_external_mapping_reverse",
            ["org_id", "external_system", "external_table", "external_id"],
            unique=False,
        )

    op.create_table(
        "integration_run",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("config_id", sa.String(40), nullable=False),
        sa.Column("bill_id", sa.String(40), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("trigger_event_id", sa.String(40), nullable=False),
        sa.Column("request_event_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("bill_version", sa.Integer(), nullable=True),
        sa.Column("invoice_id", sa.String(100), nullable=True),
        sa.Column("items_added", sa.Integer(), nullable=False),
        sa.Column("items_removed", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_event_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bill_id"],
            ["bill.id"],
        ),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["integration_config.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("integration_run", schema=None) as batch_op:
        batch_op.create_index("ix_integration_run_bill", ["org_id", "bill_id"], unique=False)
        batch_op.create_index(
            "ix_integration_run_config", ["org_id", "config_id", "id"], unique=False
        )

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("caused_by", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("actioned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("actioned_by", sa.String(200), nullable=True))
        batch_op.create_index(batch_op.f("ix_event_caused_by"), ["caused_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_caused_by"))
        batch_op.drop_column("actioned_by")
        batch_op.drop_column("actioned_at")
        batch_op.drop_column("caused_by")

    with op.batch_alter_table("integration_run", schema=None) as batch_op:
        batch_op.drop_index("ix_integration_run_config")
        batch_op.drop_index("ix_integration_run_bill")

    op.drop_table("integration_run")
    with op.batch_alter_table("external_mapping", schema=None) as batch_op:
        batch_op.drop_index("ix_external_mapping_reverse")
        batch_op.drop_index("ix_external_mapping_lookup")

    op.drop_table("external_mapping")
    with op.batch_alter_table("chargebee_line", schema=None) as batch_op:
        batch_op.drop_index("ix_chargebee_line_bill")

    op.drop_table("chargebee_line")
    op.drop_table("bill_sync")
    with op.batch_alter_table("integration_config", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integration_config_org_id"))

    op.drop_table("integration_config")
    with op.batch_alter_table("bill", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bill_org_id"))
        batch_op.drop_index(batch_op.f("ix_bill_account_id"))

    op.drop_table("bill")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_org_id"))

    op.drop_table("user")
    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_org_id"))

    op.drop_table("credential")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_org_id"))

    op.drop_table("account")
