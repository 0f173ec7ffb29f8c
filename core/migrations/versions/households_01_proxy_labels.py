"""households: what the head calls a relative (proxy label on the code and the link), and an
index to read a household's members

Revision ID: households_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "households_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proxy_code", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=32), nullable=True))
    with op.batch_alter_table("household_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=32), nullable=True))
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.create_index("ix_member_household_id", ["household_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_index("ix_member_household_id")
    with op.batch_alter_table("household_link", schema=None) as batch_op:
        batch_op.drop_column("label")
    with op.batch_alter_table("proxy_code", schema=None) as batch_op:
        batch_op.drop_column("label")
