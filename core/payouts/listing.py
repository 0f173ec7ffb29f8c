"""Listing the batches (`huzhu payout list`)."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import PayoutBatch, PayoutLine, PayoutLineStatus as L, Pool


def list_batches(session: Session, pool_code: str | None = None) -> list[dict]:
    """SPEC `payout list --json`: {batch, pool, month, status, total_fen, lines} and the split
    into paid and failed lines."""
    q = select(PayoutBatch, Pool.code).join(Pool, Pool.id == PayoutBatch.pool_id)
    if pool_code:
        q = q.where(Pool.code == pool_code)
    q = q.order_by(PayoutBatch.month.desc(), Pool.code)
    stats = {}
    for bid, status, n, fen in session.execute(
            select(PayoutLine.batch_id, PayoutLine.status, func.count(PayoutLine.id),
                   func.coalesce(func.sum(PayoutLine.amount_fen), 0))
            .group_by(PayoutLine.batch_id, PayoutLine.status)):
        stats.setdefault(bid, {})[L(status).value] = (int(n), int(fen))
    out = []
    for batch, code in session.execute(q):
        st = stats.get(batch.id, {})
        out.append({"batch": batch.number, "pool": code, "month": batch.month,
                    "status": batch.status.value, "total_fen": batch.total_fen,
                    "lines": sum(n for n, _ in st.values()),
                    "paid_lines": st.get("paid", (0, 0))[0],
                    "paid_fen": st.get("paid", (0, 0))[1],
                    "failed_lines": st.get("failed", (0, 0))[0],
                    "failed_fen": st.get("failed", (0, 0))[1],
                    "file": Path(batch.file_path).name if batch.file_path else None,
                    "created_at": batch.created_at, "confirmed_at": batch.confirmed_at})
    return out
