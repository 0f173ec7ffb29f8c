"""payouts: a claim in one live payout line only; one active bank card per household

Partial unique indexes (PostgreSQL and SQLite both have them):
- payout_line(claim_id) WHERE status <> 'failed' — whatever runs at once or is killed, a claim is
  in at most one line that is pending or paid (a failed line lets it go to a later batch);
- bank_card(household_id) WHERE active — saving a new card must deactivate the old one.
Plus an index on claim(status), which the payout run and the queues filter on.

Revision ID: payouts_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "payouts_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_payout_line_live_claim", "payout_line", ["claim_id"], unique=True,
                    postgresql_where=sa.text("status <> 'failed'"),
                    sqlite_where=sa.text("status <> 'failed'"))
    op.create_index("uq_bank_card_active_household", "bank_card", ["household_id"], unique=True,
                    postgresql_where=sa.text("active"), sqlite_where=sa.text("active"))
    op.create_index("ix_claim_status", "claim", ["status"])


def downgrade() -> None:
    op.drop_index("ix_claim_status", table_name="claim")
    op.drop_index("uq_bank_card_active_household", table_name="bank_card")
    op.drop_index("uq_payout_line_live_claim", table_name="payout_line")
