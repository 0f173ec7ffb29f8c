"""The review queue (/待审) and the review-due reminders."""
from __future__ import annotations

from datetime import date
from typing import Sequence

from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import Session

from core import outbox
from core.admins import Scope
from core.audit import audit
from core.messages import render
from core.models import (AdminGrant, AdminRole, AuditLog, Claim, ClaimStatus as S, Household, Pool,
                         SchemeYear)
from core.review.texts import member_label, reason_title


#: statuses of the review queue (/待审) and of the review-due reminders (appealed: the
#: household's 复核 waits for a reviewer's /复核)
QUEUE_STATUSES = (S.submitted, S.in_review, S.appealed)


def _waiting():
    """Claims a reviewer may take: in a queue status and not waiting for the village's
    /确认申请 (claims.uninsured_via_village)."""
    return Claim.status.in_(QUEUE_STATUSES) & Claim.awaits_village.is_(False)


def _sort_key():
    return func.coalesce(Claim.submitted_at, Claim.created_at)


def _scoped_ids(scope: Scope):
    """The ids of the waiting claims in the scope, each part read by its own index: a pool's
    by its scheme years (a claim takes a year of its household's pool; ix_claim_year_status),
    the few without a year and a village's through their households."""
    parts = []
    if scope.pool_ids:
        years = select(SchemeYear.id).where(SchemeYear.pool_id.in_(scope.pool_ids))
        parts.append(select(Claim.id).where(_waiting(), Claim.scheme_year_id.in_(years)))
        parts.append(select(Claim.id).join(Household, Claim.household_id == Household.id)
                     .where(_waiting(), Claim.scheme_year_id.is_(None),
                            Household.pool_id.in_(scope.pool_ids)))
    if scope.village_ids:
        parts.append(select(Claim.id).join(Household, Claim.household_id == Household.id)
                     .where(_waiting(), Household.village_id.in_(scope.village_ids)))
    return union(*parts) if len(parts) > 1 else parts[0] if parts else None


def queue(session: Session, scope: Scope, limit: int = 20) -> tuple[list[Claim], int]:
    """Claims waiting for review in the admin's scope, oldest first: (the first `limit`, total)."""
    q = select(Claim).where(_waiting())
    if scope.everything:
        total = session.scalar(select(func.count()).select_from(q.subquery()))
    else:
        # the ids first (a pool's waiting claims, hundreds): as one statement PostgreSQL
        # misjudged the scheme years' share and hashed the whole claim table (420 ms)
        parts = _scoped_ids(scope)
        ids = list(session.scalars(parts)) if parts is not None else []
        total = len(ids)
        q = select(Claim).where(Claim.id.in_(ids))
    rows = list(session.scalars(q.order_by(_sort_key(), Claim.id).limit(limit)))
    return rows, total


def overdue(session: Session, today: date) -> dict[int, list[Claim]]:
    """pool id -> claims waiting for review whose due date has passed, oldest first."""
    rows = session.scalars(
        select(Claim).join(Household, Claim.household_id == Household.id)
        .where(_waiting(), Claim.due_date.is_not(None),
               Claim.due_date < today)
        .order_by(Household.pool_id, Claim.due_date, Claim.id))
    by_pool: dict[int, list[Claim]] = {}
    for claim in rows:
        by_pool.setdefault(claim.household.pool_id, []).append(claim)
    return by_pool


def reviewers_of(session: Session, pool_id: int) -> list[str]:
    """The pool's reviewers (bound to it or to every pool) and its pool administrators; with
    none, the super administrators."""
    grants = session.scalars(select(AdminGrant).where(or_(
        (AdminGrant.role == AdminRole.reviewer)
        & (or_(AdminGrant.pool_id == pool_id, AdminGrant.pool_id.is_(None))),
        (AdminGrant.role == AdminRole.pool_admin) & (AdminGrant.pool_id == pool_id),
    )).order_by(AdminGrant.id))
    openids = list(dict.fromkeys(g.openid for g in grants))
    if not openids:
        openids = list(dict.fromkeys(session.scalars(
            select(AdminGrant.openid).where(AdminGrant.role == AdminRole.super)
            .order_by(AdminGrant.id))))
    return openids


def remind_overdue(session: Session, today: date, actor: str = "scheduler") -> int:
    """Queue one message per pool with claims past their due date to its reviewers and
    administrators; once a day per pool (a second run the same day sends nothing).
    Returns the number of messages queued."""
    sent = 0
    for pool_id, claims in overdue(session, today).items():
        key = f"{pool_id}:{today.isoformat()}"
        done = session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "review.overdue_reminder", AuditLog.entity == "pool",
            AuditLog.entity_id == key))
        if done:
            continue
        openids = reviewers_of(session, pool_id)
        pool = session.get(Pool, pool_id)
        text = render("review_overdue", pool=pool, today=today, total=len(claims),
                      claims=[_queue_line(c, today) for c in claims[:15]])
        for openid in openids:
            outbox.send_text(session, openid, text)
            sent += 1
        audit(session, actor, "review.overdue_reminder", "pool", key, None,
              {"claims": [c.number for c in claims], "to": len(openids)})
    session.flush()
    return sent


def _queue_line(claim: Claim, today: date) -> dict:
    return {"number": claim.number, "village": claim.household.village.full_name,
            "member": member_label(claim), "status": claim.status.value,
            "due_date": claim.due_date, "overdue": bool(claim.due_date and claim.due_date < today),
            "amount_fen": claim.amount_fen,
            "reasons": [reason_title(c, claim) for c in claim.reasons or []],
            "appeal_reason": claim.appeal_reason,
            "submitted": claim.submitted_at}


def queue_lines(claims: Sequence[Claim], today: date) -> list[dict]:
    return [_queue_line(c, today) for c in claims]
