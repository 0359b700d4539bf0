"""connections: credentials hold several secrets and a status; OAuth tokens and consent
states

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The plaintext becomes a JSON object of the secret fields; rows written before hold
    # the bare API key, which domain.integrations.credentials still reads.
    op.alter_column("credential", "api_key_ciphertext", new_column_name="secret_ciphertext")
    op.add_column(
        "credential",
        sa.Column("status", sa.String(32), nullable=False, server_default="connected"),
    )
    op.alter_column("credential", "status", server_default=None)
    op.add_column("credential", sa.Column("status_reason", sa.String(1000), nullable=True))
    op.add_column("credential", sa.Column("tenant_id", sa.String(100), nullable=True))
    op.add_column(
        "credential", sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE credential SET connected_at = created_at")
    op.create_table(
        "credential_token",
        sa.Column("credential_id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("access_token_ciphertext", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_token_ciphertext", sa.String(), nullable=True),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credential.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("credential_id"),
    )
    op.create_index("ix_credential_token_org_id", "credential_token", ["org_id"])
    op.create_table(
        "oauth_state",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("credential_id", sa.String(40), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["credential_id"], ["credential.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oauth_state_org_id", "oauth_state", ["org_id"])
    op.create_index("ix_oauth_state_credential_id", "oauth_state", ["credential_id"])


def downgrade() -> None:
    op.drop_table("oauth_state")
    op.drop_table("credential_token")
    for column in ("connected_at", "tenant_id", "status_reason", "status"):
        op.drop_column("credential", column)
    op.alter_column("credential", "secret_ciphertext", new_column_name="api_key_ciphertext")
