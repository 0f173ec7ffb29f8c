"""notify: a notice's event, household and the channel that delivered it, on the outbox row

Revision ID: notify_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "notify_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("event", sa.String(32), nullable=True))
    op.add_column("outbox", sa.Column("household_id", sa.Integer(), nullable=True))
    op.add_column("outbox", sa.Column("channel", sa.String(16), nullable=True))
    op.create_index("ix_outbox_notice", "outbox", ["household_id", "event"])


def downgrade() -> None:
    op.drop_index("ix_outbox_notice", table_name="outbox")
    op.drop_column("outbox", "channel")
    op.drop_column("outbox", "household_id")
    op.drop_column("outbox", "event")
