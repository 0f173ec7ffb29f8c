"""scaleq: indexes for the chat answers at province scale (5 million members, 50 pools)

- claim(household_id, created_at, id): a household's claims newest first (4 查询进度,
  5 查询余额); the claim table had no index on household_id, so each of these read every claim
- claim(scheme_year_id, status, amount_fen): a year's (so a pool's) claims by status, counted and
  summed from the index alone (/统计, 6 基金公示)
- enrolment(scheme_year_id, status, member_id): a year's paid members (6 基金公示, /统计)
- journal_entry(pool_id, booked_on): a pool's entries by day (the console's months)
- partial indexes on the rows waiting for the village (household and claim WHERE
  awaits_village): /待审's "waits for the village" without reading every household

Revision ID: scaleq_01
Revises: appeal_02
"""
from alembic import op
import sqlalchemy as sa

revision = "scaleq_01"
down_revision = "appeal_02"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_claim_household", "claim", ["household_id", "created_at", "id"])
    op.create_index("ix_claim_year_status", "claim", ["scheme_year_id", "status", "amount_fen"])
    op.create_index("ix_enrolment_year_status", "enrolment",
                    ["scheme_year_id", "status", "member_id"])
    op.create_index("ix_journal_entry_pool_booked", "journal_entry", ["pool_id", "booked_on"])
    op.create_index("ix_household_awaits_village", "household", ["id"],
                    postgresql_where=sa.text("awaits_village"),
                    sqlite_where=sa.text("awaits_village"))
    op.create_index("ix_claim_awaits_village", "claim", ["id"],
                    postgresql_where=sa.text("awaits_village"),
                    sqlite_where=sa.text("awaits_village"))


def downgrade() -> None:
    op.drop_index("ix_claim_awaits_village", table_name="claim")
    op.drop_index("ix_household_awaits_village", table_name="household")
    op.drop_index("ix_journal_entry_pool_booked", table_name="journal_entry")
    op.drop_index("ix_enrolment_year_status", table_name="enrolment")
    op.drop_index("ix_claim_year_status", table_name="claim")
    op.drop_index("ix_claim_household", table_name="claim")
