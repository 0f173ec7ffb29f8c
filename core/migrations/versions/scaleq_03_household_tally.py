"""scaleq: household_tally, each active household's members and enrolments counted

/统计's participation per village joined every household, member and enrolment of the pool
(a county pool's hundreds of thousands of rows, in a table of millions); it now sums this table,
kept exact by core.stats.refresh_tally in the transaction that changes a household, its members
or their enrolments. Filled here from the rows already there.

Revision ID: scaleq_03
Revises: scaleq_02
"""
from alembic import op
import sqlalchemy as sa

revision = "scaleq_03"
down_revision = "scaleq_02"
branch_labels = None
depends_on = None

MEMBERS = """
INSERT INTO household_tally (household_id, scheme_year_id, pool_id, village_id, persons,
                             enrolled, paid)
SELECT h.id, 0, h.pool_id, h.village_id, COUNT(m.id), 0, 0
FROM household h LEFT JOIN member m ON m.household_id = h.id
WHERE h.status = 'active'
GROUP BY h.id, h.pool_id, h.village_id
"""
ENROLMENTS = """
INSERT INTO household_tally (household_id, scheme_year_id, pool_id, village_id, persons,
                             enrolled, paid)
SELECT h.id, e.scheme_year_id, h.pool_id, h.village_id, 0, COUNT(e.id),
       SUM(CASE WHEN e.status = 'paid' THEN 1 ELSE 0 END)
FROM household h JOIN member m ON m.household_id = h.id JOIN enrolment e ON e.member_id = m.id
WHERE h.status = 'active'
GROUP BY h.id, e.scheme_year_id, h.pool_id, h.village_id
"""


def upgrade() -> None:
    op.create_table(
        "household_tally",
        sa.Column("household_id", sa.Integer, nullable=False),
        sa.Column("scheme_year_id", sa.Integer, nullable=False),
        sa.Column("pool_id", sa.Integer, nullable=False),
        sa.Column("village_id", sa.Integer, nullable=False),
        sa.Column("persons", sa.Integer, nullable=False),
        sa.Column("enrolled", sa.Integer, nullable=False),
        sa.Column("paid", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("household_id", "scheme_year_id"),
    )
    op.create_index("ix_household_tally_pool_year", "household_tally",
                    ["pool_id", "scheme_year_id", "village_id", "persons", "enrolled", "paid"])
    op.execute(MEMBERS)
    op.execute(ENROLMENTS)


def downgrade() -> None:
    op.drop_index("ix_household_tally_pool_year", table_name="household_tally")
    op.drop_table("household_tally")
