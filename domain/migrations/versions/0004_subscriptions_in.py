"""subscriptions in: account plans; accounts remember the events that produced them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_plan",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("plan_id", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("external_subscription_id", sa.String(255), nullable=False),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("external_plan_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.String(80), nullable=False),
        sa.Column("produced_by", sa.JSON(), nullable=False),
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
            "org_id", "provider", "external_subscription_id", name="uq_account_plan_subscription"
        ),
    )
    with op.batch_alter_table("account_plan", schema=None) as batch_op:
        batch_op.create_index("ix_account_plan_account", ["org_id", "account_id"], unique=False)

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("produced_by", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("facts_version", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("facts_version")
        batch_op.drop_column("produced_by")

    with op.batch_alter_table("account_plan", schema=None) as batch_op:
        batch_op.drop_index("ix_account_plan_account")

    op.drop_table("account_plan")
