"""scale: the members paid in a scheme year counted from an index (the monthly disclosure of
each pool, the figures) instead of reading 100,000 enrolment rows a pool

Revision ID: scaleb_03
Revises: scaleb_02
"""
from alembic import op

revision = "scaleb_03"
down_revision = "scaleb_02"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_enrolment_year_status", "enrolment", ["scheme_year_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_enrolment_year_status", table_name="enrolment")
