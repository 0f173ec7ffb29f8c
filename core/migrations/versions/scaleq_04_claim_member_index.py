"""scaleq: claims by member — a decision reads the person's other claims in the pool

`/核定` (core.review.decide.history_of) reads the member's other claims, by the ID number's
hash: the members with that hash by their index, then their claims — with no index on
claim.member_id, a scan of every claim of the province for each decision (25 ms at 6,400
claims, growing with every month's 100,000).

Revision ID: scaleq_04
Revises: scaleq_03
"""
from alembic import op

revision = "scaleq_04"
down_revision = "scaleq_03"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_claim_member", "claim", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_claim_member", table_name="claim")
