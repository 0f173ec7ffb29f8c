"""The schedule's decisions: which pools' monthly payout run is due today."""
from __future__ import annotations

import calendar
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditLog, Pool
from core.payouts.common import month_of, payout_day_for


def scheduled_day(payout_day: int, today: date) -> int:
    """The day of this month the run is due (payout.day, or the month's last day if shorter)."""
    return min(payout_day, calendar.monthrange(today.year, today.month)[1])


def scheduled_run_done(session: Session, pool_code: str, month: str) -> bool:
    return session.scalar(select(AuditLog.id).where(
        AuditLog.action == "payout.scheduled", AuditLog.entity == "pool",
        AuditLog.entity_id == f"{pool_code}:{month}").limit(1)) is not None


def due_pools(session: Session, today: date) -> list[str]:
    """Pools whose payout day has come this month and whose scheduled run has not been done
    (a run missed while the server was down is caught up the next day)."""
    due = []
    for pool in session.scalars(select(Pool).order_by(Pool.id)):
        day = payout_day_for(session, pool.id, today)
        if day is None or today.day < scheduled_day(day, today):
            continue
        if not scheduled_run_done(session, pool.code, month_of(today)):
            due.append(pool.code)
    return due
