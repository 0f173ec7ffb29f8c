"""webhook: signed query strings remembered with their message (replays refused)

Revision ID: webhook_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "webhook_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_nonce",
        sa.Column("nonce", sa.String(length=96), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )


def downgrade() -> None:
    op.drop_table("webhook_nonce")
