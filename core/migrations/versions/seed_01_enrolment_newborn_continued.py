"""seed: an enrolment knows whether it is a newborn's (paid outside the window) and whether a
village list declared the member's earlier participation (上年参加)

Revision ID: seed_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "seed_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrolment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("newborn", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("continued", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrolment", schema=None) as batch_op:
        batch_op.drop_column("continued")
        batch_op.drop_column("newborn")
