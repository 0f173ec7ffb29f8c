"""console: indexes for the claims queue (status, oldest first; the household's scope) that
cover what it reads

Revision ID: console_02
Revises: console_01
"""
from alembic import op

revision = "console_02"
down_revision = "console_01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_claim_queue", "claim", ["status", "submitted_at", "id", "household_id"])
    # the scope of a claim (its household's pool and village) read from the index alone
    op.create_index("ix_household_scope", "household", ["id", "pool_id", "village_id"])


def downgrade() -> None:
    op.drop_index("ix_household_scope", table_name="household")
    op.drop_index("ix_claim_queue", table_name="claim")
