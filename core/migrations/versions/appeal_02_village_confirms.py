"""appeal: what waits for the village administrator — a household signed up in chat under a
scheme with enrolment.village_confirms (/确认登记), an uninsured member's claim under
claims.uninsured_via_village (/确认申请)

Revision ID: appeal_02
Revises: appeal_01
"""
from alembic import op
import sqlalchemy as sa

revision = "appeal_02"
down_revision = "appeal_01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.add_column(sa.Column("awaits_village", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table("claim", schema=None) as batch_op:
        batch_op.add_column(sa.Column("awaits_village", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("claim", schema=None) as batch_op:
        batch_op.drop_column("awaits_village")
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.drop_column("awaits_village")
