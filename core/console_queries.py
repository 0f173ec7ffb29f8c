"""What the web console's pages list, scoped like the chat commands: the claims queue with its
filters, households by number, village or name, the audit log. Read only; personal data masked
by the pages (names with core.crypto.mask_name, IDs as stored masked)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload, load_only

from core.admins import Scope
from core.crypto import mask_name
from core.review.queue import QUEUE_STATUSES
from core.models import (AuditLog, Claim, ClaimStatus as S, Household, Member, Pool, Village)

PAGE = 50
#: the queue's default statuses: waiting for a reviewer, as /待审 (core.review.QUEUE_STATUSES)
WAITING = QUEUE_STATUSES


@dataclass(frozen=True)
class Listing:
    rows: list
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset else None


def _scoped(q, scope: Scope):
    if scope.everything:
        return q
    return q.where(or_(Household.pool_id.in_(scope.pool_ids),
                       Household.village_id.in_(scope.village_ids)))


def claims(session: Session, scope: Scope, statuses=WAITING, village_id: int | None = None,
           offset: int = 0, limit: int = PAGE) -> Listing:
    """Claims in the scope with these statuses (and village), oldest first.

    The count and the page read the index ix_claim_queue (status, submitted_at, id,
    household_id, migration console_02) alone, not the claims' rows (a page of 50 is a top-N
    sort of index entries). Households are read only for a village (ix_household_village:
    village_id, id) or a scope of some pools but not all."""
    q = select(Claim.id).where(Claim.status.in_(statuses))
    if village_id is not None:
        village = session.get(Village, village_id)
        if village is None or not scope.covers_village(village):
            return Listing([], 0, offset, limit)
        q = q.where(Claim.household_id.in_(
            select(Household.id).where(Household.village_id == village_id)))
    elif scope.village_ids and not scope.pool_ids and not scope.everything:
        q = q.where(Claim.household_id.in_(
            select(Household.id).where(Household.village_id.in_(scope.village_ids))))
    elif not _covers_every_pool(session, scope):
        q = _scoped(q.join(Household, Claim.household_id == Household.id), scope)
    first = (func.coalesce(Claim.submitted_at, Claim.created_at) if S.collecting in statuses
             else Claim.submitted_at)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    ids = list(session.scalars(q.order_by(first, Claim.id).offset(offset).limit(limit)))
    # the page reads these columns only: the read-out and the trace (JSON) stay unread
    rows = []
    if ids:
        by_id = {c.id: c for c in session.scalars(
            select(Claim).where(Claim.id.in_(ids))
            .options(load_only(Claim.id, Claim.number, Claim.status, Claim.submitted_at,
                               Claim.due_date, Claim.amount_fen, Claim.flags,
                               Claim.household_id, Claim.member_id),
                     joinedload(Claim.member).load_only(Member.id, Member.name),
                     joinedload(Claim.household).joinedload(Household.village)))}
        rows = [by_id[i] for i in ids]
    return Listing(rows, total, offset, limit)


def _covers_every_pool(session: Session, scope: Scope) -> bool:
    return scope.everything or set(session.scalars(select(Pool.id))) <= set(scope.pool_ids)


def households(session: Session, scope: Scope, text: str = "", village_id: int | None = None,
               offset: int = 0, limit: int = PAGE) -> Listing:
    """Households in the scope: by number (exact or its start), by a member's name as chat
    shows it masked (王*山) or in full, by village."""
    q = _scoped(select(Household), scope)
    text = text.strip()
    if village_id is not None:
        q = q.where(Household.village_id == village_id)
    if text:
        if text.upper().startswith("H") and text[1:].isdigit():
            q = q.where(Household.number.like(f"{text.upper()}%"))
        else:
            names = _name_matches(session, text)
            q = q.where(Household.id.in_(
                select(Member.household_id).where(Member.name.in_(names)))) if names \
                else q.where(False)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(Household.number).offset(offset).limit(limit)
                                .options(joinedload(Household.village),
                                         joinedload(Household.members))).unique())
    return Listing(rows, total, offset, limit)


def _name_matches(session: Session, text: str) -> list[str]:
    """Names equal to the text, or whose masked form is the text (王*山)."""
    if "*" not in text:
        return [text]
    first, last = text[0], text.rstrip("*")[-1] if text.rstrip("*") else ""
    candidates = session.scalars(select(Member.name).distinct().where(
        Member.name.like(f"{first}%"), func.length(Member.name) == len(text)).limit(5000))
    return [n for n in candidates if mask_name(n) == text and (not last or n.endswith(last))]


def village_choices(session: Session, scope: Scope) -> list[Village]:
    return scope.villages(session)


def audit_log(session: Session, actor: str = "", action: str = "", entity_id: str = "",
              offset: int = 0, limit: int = PAGE) -> Listing:
    q = select(AuditLog)
    if actor:
        q = q.where(AuditLog.actor.like(f"%{actor}%"))
    if action:
        q = q.where(AuditLog.action.like(f"{action}%"))
    if entity_id:
        q = q.where(AuditLog.entity_id == entity_id)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(AuditLog.id.desc()).offset(offset).limit(limit)))
    return Listing(rows, total, offset, limit)
