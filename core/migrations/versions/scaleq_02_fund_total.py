"""scaleq: fund_total, the ledger summed per pool, day, entry kind and account

6 基金公示, /统计's balance and the year report summed every journal line of the pool (at a
county pool's size, hundreds of thousands a year, and the balance over all years); they now read
this table, which core.ledger.post keeps exact in the transaction that posts each entry. Filled
here from the lines already posted (a database in use keeps its figures).

Revision ID: scaleq_02
Revises: scaleq_01
"""
from alembic import op
import sqlalchemy as sa

revision = "scaleq_02"
down_revision = "scaleq_01"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO fund_total (pool_id, booked_on, kind, account, amount_fen, credit_fen, lines)
SELECT e.pool_id, e.booked_on, e.kind, l.account, SUM(l.amount_fen),
       SUM(CASE WHEN l.amount_fen < 0 THEN l.amount_fen ELSE 0 END), COUNT(l.id)
FROM journal_line l JOIN journal_entry e ON e.id = l.entry_id
GROUP BY e.pool_id, e.booked_on, e.kind, l.account
"""


def upgrade() -> None:
    op.create_table(
        "fund_total",
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pool.id"), nullable=False),
        sa.Column("booked_on", sa.Date, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("credit_fen", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("pool_id", "booked_on", "kind", "account"),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("fund_total")
