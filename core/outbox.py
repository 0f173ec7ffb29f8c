"""Transactional outbox: notifications are rows written in the same transaction as the change
that causes them; a worker (bot/outbox/worker.py) delivers them with retries and exponential backoff.

Kinds used across the project (payload keys):
- `wechat.send`      {openid, message: {type: text, content} | {type: image, path} }
- `media.download`   {document_id, media_id}
- `wecom.post`       {key, markdown} or {key, image_path}
- `pay.qr`           {openid, out_trade_no, code_url}: the payment code, drawn and sent as an image
- `notice`           {household_id, event, text, variables, openids, done?, sms?, errors?}: one
                     notice to a household (core/notify.py; columns event, household_id, and
                     channel once delivered), bot/outbox/notice.py
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import OutboxMessage, OutboxStatus, utcnow


def enqueue(session: Session, kind: str, payload: dict,
            not_before: datetime | None = None) -> OutboxMessage:
    row = OutboxMessage(kind=kind, payload=payload, status=OutboxStatus.pending,
                        recipient=payload.get("openid"),
                        next_attempt_at=not_before or utcnow())
    session.add(row)
    return row


def send_text(session: Session, openid: str, content: str) -> OutboxMessage:
    return enqueue(session, "wechat.send", {"openid": openid,
                                            "message": {"type": "text", "content": content}})


def lease_due(session: Session, limit: int = 20, lease_seconds: float = 120,
              now: datetime | None = None) -> list[OutboxMessage]:
    """Take up to `limit` due rows for this worker: they are pushed `lease_seconds` into the
    future, so no other worker takes them while this one delivers outside the transaction; a
    worker that dies leaves them to be taken again when the lease runs out. On PostgreSQL the
    rows are read FOR UPDATE SKIP LOCKED, so several workers never take the same row."""
    now = now or utcnow()
    stmt = (select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.pending,
                   OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.next_attempt_at = now + timedelta(seconds=lease_seconds)
    return rows


def mark_sent(row: OutboxMessage) -> None:
    row.status = OutboxStatus.sent
    row.sent_at = utcnow()
    row.attempts += 1
    row.last_error = None


def mark_failed(row: OutboxMessage, error: str, max_attempts: int, backoff_seconds: float,
                retry: bool = True) -> None:
    """Back off exponentially (base × 2^attempts, at most a day); dead after max_attempts."""
    row.attempts += 1
    row.last_error = error[:2000]
    if not retry or row.attempts >= max_attempts:
        row.status = OutboxStatus.dead
        return
    delay = min(backoff_seconds * (2 ** (row.attempts - 1)), 86400)
    row.next_attempt_at = utcnow() + timedelta(seconds=delay)


HOLD = timedelta(days=30)


def hold(row: OutboxMessage, until: datetime | None = None) -> None:
    """Outside the 48-hour window with no template: wait until the user writes again (or
    `until`: a notice's SMS is due 24 hours after it was queued)."""
    row.next_attempt_at = until or utcnow() + HOLD
    if not (row.last_error or "").startswith("held"):
        row.last_error = ("held: outside the 48-hour window" if not row.last_error
                          else f"held: {row.last_error}")[:2000]


def wake(session: Session, openid: str) -> int:
    """The user wrote: messages held for them, and notices held for their households, are due
    now."""
    from core.models import HouseholdLink

    now = utcnow()
    households = select(HouseholdLink.household_id).where(HouseholdLink.openid == openid)
    result = session.execute(
        update(OutboxMessage)
        .where(or_(OutboxMessage.recipient == openid,
                   and_(OutboxMessage.kind == "notice",
                        OutboxMessage.household_id.in_(households))),
               OutboxMessage.status == OutboxStatus.pending,
               OutboxMessage.next_attempt_at > now)
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
    result = {s.value: 0 for s in OutboxStatus}
    for status, n in rows:
        result[status.value if hasattr(status, "value") else status] = n
    return result


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; they are stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
