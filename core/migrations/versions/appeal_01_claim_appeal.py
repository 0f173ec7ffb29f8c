"""appeal: when and by whom a claim was rejected, and the household's appeal (复核) of it

Revision ID: appeal_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "appeal_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("claim", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rejected_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("appealed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("appealed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("appeal_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("claim", schema=None) as batch_op:
        batch_op.drop_column("appeal_reason")
        batch_op.drop_column("appealed_by")
        batch_op.drop_column("appealed_at")
        batch_op.drop_column("rejected_by")
        batch_op.drop_column("rejected_at")
