"""scale: a pool's journal entries by index — one entry per household's payment makes the
journal as long as the province's households (1.5 million at 5 million members), and every
balance (the payout plan), fund report and disclosure read one pool's entries

Revision ID: scaleb_02
Revises: scaleb_01
"""
from alembic import op

revision = "scaleb_02"
down_revision = "scaleb_01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_journal_entry_pool", "journal_entry", ["pool_id", "booked_on"])


def downgrade() -> None:
    op.drop_index("ix_journal_entry_pool", table_name="journal_entry")
