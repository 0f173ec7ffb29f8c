"""payments: one open order per household and scheme year (partial unique index), and the
payment-deadline reminders already sent (one per household, scheme year and reminder)

Revision ID: payments_01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "payments_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_payment_order_open", "payment_order", ["household_id", "scheme_year_id"],
                    unique=True, sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))
    op.create_table(
        "payment_reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("scheme_year_id", sa.Integer(), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["household_id"], ["household.id"]),
        sa.ForeignKeyConstraint(["scheme_year_id"], ["scheme_year.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("household_id", "scheme_year_id", "days_before"),
    )


def downgrade() -> None:
    op.drop_table("payment_reminder")
    op.drop_index("ux_payment_order_open", table_name="payment_order")
