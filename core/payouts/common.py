"""Payouts: names and look-ups shared by the run, the confirmation and the jobs (batch
numbers, months, finding pools, batches and claims, who hears about a pool's payouts)."""
from __future__ import annotations

import re
from datetime import date

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core import scheme_years
from core.errors import DomainError
from core.messages import render
from core.models import AdminGrant, AdminRole, Claim, PayoutBatch, PayoutLine, Pool, Village


_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class PayoutError(DomainError):
    """A payout action that cannot be done; nothing changed. `code`: unknown_pool, bad_month,
    unknown_batch, not_exported, unknown_claim, not_in_batch, already_failed, wrong_status,
    not_paid, already_recovered, reason_required, bad_period, no_scheme."""


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def check_month(month: str) -> str:
    if not _MONTH.match(month or ""):
        raise PayoutError("bad_month", month=month)
    return month


def batch_number(pool: Pool, month: str) -> str:
    """B + month + pool: `B202603-demo` (typed by administrators in /确认发放)."""
    yyyymm = month.replace("-", "")
    number = f"B{yyyymm}-{pool.code}"
    return number if len(number) <= 24 else f"B{yyyymm}-#{pool.id}"


def find_pool(session: Session, code: str) -> Pool:
    pool = session.scalar(select(Pool).where(Pool.code == code))
    if pool is None:
        raise PayoutError("unknown_pool", pool=code)
    return pool


def find_batch(session: Session, number: str, lock: bool = False) -> PayoutBatch:
    q = select(PayoutBatch).where(func.lower(PayoutBatch.number) == (number or "").strip().lower())
    if lock:
        q = q.with_for_update()
    batch = session.scalar(q)
    if batch is None:
        raise PayoutError("unknown_batch", batch=number)
    return batch


def find_claim(session: Session, number: str) -> Claim:
    claim = session.scalar(select(Claim).where(Claim.number == (number or "").strip().upper()))
    if claim is None:
        raise PayoutError("unknown_claim", claim=number)
    return claim


def payout_day_for(session: Session, pool_id: int, day: date) -> int | None:
    """The scheme's `payout.day` for the pool on `day` (None when the pool has no scheme)."""
    year = scheme_years.latest_started(session, pool_id, day)
    return year.scheme.payout.day if year is not None else None


def pool_admin_openids(session: Session, pool_id: int) -> list[str]:
    """Who hears about the pool's payouts: its pool_admins, the super admins and the village
    admins of its villages."""
    villages = select(Village.id).where(Village.pool_id == pool_id)
    q = select(AdminGrant.openid).where(or_(
        AdminGrant.role == AdminRole.super,
        and_(AdminGrant.role == AdminRole.pool_admin, AdminGrant.pool_id == pool_id),
        and_(AdminGrant.role == AdminRole.village_admin, AdminGrant.village_id.in_(villages)),
    )).distinct()
    return sorted(set(session.scalars(q)))



def _notify_admins(session: Session, pool_id: int, template: str, **context) -> int:
    from core import outbox

    openids = pool_admin_openids(session, pool_id)
    if openids:
        text = render(template, **context)
        for openid in openids:
            outbox.send_text(session, openid, text)
    return len(openids)


def _households(batch_id: int):
    """A SELECT of the household ids of a batch's claims (for the bulk claim moves)."""
    return (select(Claim.household_id).join(PayoutLine, PayoutLine.claim_id == Claim.id)
            .where(PayoutLine.batch_id == batch_id))
