"""chargebee lines: the credential and site that hold them; claims keyed by org, site, invoice

Chargebee numbers invoices per site, so an invoice id alone does not name an invoice.
Existing lines take the credential and site of their config's current credential; a line
whose config has no credential now keeps both unknown (NULL) and is no run's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chargebee_line", sa.Column("credential_id", sa.String(40), nullable=True))
    op.add_column("chargebee_line", sa.Column("site", sa.String(63), nullable=True))
    op.execute(
        """
        UPDATE chargebee_line AS line
           SET credential_id = credential.id, site = credential.site
          FROM integration_config AS config
          JOIN credential ON credential.id = config.credential_id
         WHERE config.id = line.config_id
           AND credential.org_id = line.org_id
        """
    )
    op.create_index("ix_chargebee_line_invoice", "chargebee_line", ["org_id", "site", "invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_chargebee_line_invoice", table_name="chargebee_line")
    op.drop_column("chargebee_line", "site")
    op.drop_column("chargebee_line", "credential_id")
