"""console: indexes for the claims queue (status, oldest first; a village's households) that
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
    # a village's households (the queue's village filter, a village administrator's scope)
    op.create_index("ix_household_village", "household", ["village_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_household_village", table_name="household")
    op.drop_index("ix_claim_queue", table_name="claim")
