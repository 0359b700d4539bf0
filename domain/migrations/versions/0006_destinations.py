"""destinations as plug-ins: one ledger of remote lines, credentials with options

``chargebee_line`` becomes ``remote_line``, the ledger every destination shares; each
line names its destination, and ``site`` is the remote account that numbers its document
(a Chargebee site; Stripe and Paddle ids are global, so their scope is the destination's
name). Credentials gain ``options``: the public fields of the destination's credential
model (limits, environment), and ``site`` becomes optional (only Chargebee has one).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("chargebee_line", "remote_line")
    op.execute("ALTER SEQUENCE chargebee_line_id_seq RENAME TO remote_line_id_seq")
    op.execute("ALTER INDEX chargebee_line_pkey RENAME TO remote_line_pkey")
    op.execute("ALTER INDEX ix_chargebee_line_bill RENAME TO ix_remote_line_bill")
    op.execute("ALTER INDEX ix_chargebee_line_invoice RENAME TO ix_remote_line_invoice")
    for column in ("org_id", "config_id", "bill_id"):
        op.execute(
            f"ALTER TABLE remote_line RENAME CONSTRAINT chargebee_line_{column}_fkey "
            f"TO remote_line_{column}_fkey"
        )
    op.add_column(
        "remote_line",
        sa.Column("destination", sa.String(32), nullable=False, server_default="chargebee"),
    )
    op.alter_column("remote_line", "destination", server_default=None)
    op.add_column(
        "credential",
        sa.Column("options", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.alter_column("credential", "options", server_default=None)
    op.alter_column("credential", "site", existing_type=sa.String(63), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE credential SET site = '' WHERE site IS NULL")
    op.alter_column("credential", "site", existing_type=sa.String(63), nullable=False)
    op.drop_column("credential", "options")
    op.drop_column("remote_line", "destination")
    for column in ("org_id", "config_id", "bill_id"):
        op.execute(
            f"ALTER TABLE remote_line RENAME CONSTRAINT remote_line_{column}_fkey "
            f"TO chargebee_line_{column}_fkey"
        )
    op.execute("ALTER INDEX ix_remote_line_invoice RENAME TO ix_chargebee_line_invoice")
    op.execute("ALTER INDEX ix_remote_line_bill RENAME TO ix_chargebee_line_bill")
    op.execute("ALTER INDEX remote_line_pkey RENAME TO chargebee_line_pkey")
    op.execute("ALTER SEQUENCE remote_line_id_seq RENAME TO chargebee_line_id_seq")
    op.rename_table("remote_line", "chargebee_line")
