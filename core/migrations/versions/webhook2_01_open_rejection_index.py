"""webhook: a small index of the claims still open to appeal (rejected, not appealed), by
household — the webhook reads, with each sender, whether their household has one

Revision ID: webhook2_01
Revises: appeal_01
"""
from alembic import op
import sqlalchemy as sa

revision = "webhook2_01"
down_revision = "appeal_01"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'rejected' AND appealed_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_claim_open_rejection", "claim", ["household_id"],
                    postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_claim_open_rejection", table_name="claim")
