"""How long huzhu keeps what it needs only for a while.

Each accepted WeChat message leaves a row in `inbound_message` with the reply it got, so that
WeChat's retries (within seconds) are answered from it and not handled twice. Kept for
CACHED_REPLY_DAYS, then deleted (the nightly job `retention.cached_replies`): the replies hold
personal data (masked ID numbers, names, amounts) the audit log does not need.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.audit import audit
from core.models import InboundMessage

CACHED_REPLY_DAYS = 30
CHUNK = 5000  # rows per DELETE: short locks, while messages keep arriving


def delete_cached_replies(session: Session, now: datetime, days: int = CACHED_REPLY_DAYS,
                          actor: str = "scheduler") -> int:
    """Delete the dedupe rows (and their cached replies) received more than `days` days before
    `now` (UTC); commits after each chunk; returns how many went. One audit row if any did."""
    cutoff = now - timedelta(days=days)
    m = InboundMessage
    last = session.scalar(select(func.max(m.id)).where(m.received_at < cutoff))
    first = session.scalar(select(func.min(m.id)).where(m.received_at < cutoff))
    session.commit()
    deleted = 0
    if last is None:
        return 0
    low = first
    while low <= last:
        high = min(low + CHUNK - 1, last)
        result = session.execute(delete(m).where(m.id >= low, m.id <= high,
                                                  m.received_at < cutoff))
        deleted += result.rowcount or 0
        session.commit()
        low = high + 1
    if deleted:
        audit(session, actor, "retention.cached_replies", "inbound_message", None, None,
              {"deleted": deleted, "older_than_days": days, "cutoff": cutoff.isoformat()})
        session.commit()
    return deleted


def delete_expired_nonces(session: Session, now: datetime) -> int:
    """Forget the webhook's signed queries whose timestamps have left its window (they could
    not be accepted again anyway); returns how many went. No audit: nothing personal."""
    from core.models import WebhookNonce

    result = session.execute(delete(WebhookNonce).where(WebhookNonce.expires_at < now))
    session.commit()
    return result.rowcount or 0
