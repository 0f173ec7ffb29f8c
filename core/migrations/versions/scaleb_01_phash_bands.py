"""scale: the bands of each photo's pHash, indexed, so the look-up of near duplicates reads the
few photos that share a band instead of every stored photo; the stored photos' bands filled in

Revision ID: scaleb_01
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "scaleb_01"
down_revision = "0002"
branch_labels = None
depends_on = None

WITHIN = 4  # core.claims.DUPLICATE_DISTANCE when this was written


def _bands(value: str) -> list[tuple[int, int]]:
    bits = len(value) * 4
    number = int(value, 16)
    width = -(-bits // (WITHIN + 1))
    return [(band, (number >> (band * width)) & ((1 << width) - 1))
            for band in range(WITHIN + 1) if band * width < bits]


def upgrade() -> None:
    table = op.create_table(
        "document_phash_band",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("document_id", sa.Integer(),
                  sa.ForeignKey("claim_document.id", ondelete="CASCADE"), nullable=False),
        sa.Column("band", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.create_index("ix_document_phash_band_document_id", "document_phash_band", ["document_id"])
    op.create_index("ix_document_phash_band", "document_phash_band", ["band", "value"])
    conn = op.get_bind()
    rows = []
    for doc_id, value in conn.execute(sa.text(
            "SELECT id, phash FROM claim_document WHERE phash IS NOT NULL")):
        try:
            rows += [{"document_id": doc_id, "band": b, "value": v} for b, v in _bands(value)]
        except ValueError:  # not hex: it never matched by pHash either
            continue
        if len(rows) >= 10_000:
            op.bulk_insert(table, rows)
            rows = []
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("document_phash_band")
