"""security: wrong invite and binding codes, counted to stop guessing

Revision ID: security_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "security_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guess_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_guess_attempt_kind_at", "guess_attempt", ["kind", "at"])
    op.create_index("ix_guess_attempt_kind_openid_at", "guess_attempt", ["kind", "openid", "at"])


def downgrade() -> None:
    op.drop_index("ix_guess_attempt_kind_openid_at", table_name="guess_attempt")
    op.drop_index("ix_guess_attempt_kind_at", table_name="guess_attempt")
    op.drop_table("guess_attempt")
