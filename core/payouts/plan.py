"""The plan: what a payout run would take now (every approved claim of the pool, oldest first,
as far as the balance covers; the rest waiting for the balance, a card or an objection)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core import ledger, scheme_years
from core.models import (BankCard, Claim, ClaimStatus as S, Household, Member, Objection,
                         PayoutBatch, PayoutLine, PayoutLineStatus as L)

log = logging.getLogger("huzhu.payouts")


@dataclass
class Candidate:
    claim_id: int
    claim_number: str
    household_id: int
    household_number: str
    village_id: int
    amount_fen: int
    card_id: int | None
    bank: str | None
    holder: str | None
    number_enc: str | None
    number_masked: str | None


@dataclass
class Plan:
    pool_id: int
    balance_fen: int  # the ledger's balance
    pending_fen: int  # lines of batches not yet confirmed
    take: list[Candidate] = field(default_factory=list)
    waiting_balance: list[Candidate] = field(default_factory=list)
    waiting_card: list[Candidate] = field(default_factory=list)
    held: list[Candidate] = field(default_factory=list)  # open objection (公示异议)

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.pending_fen

    @property
    def total_fen(self) -> int:
        return sum(c.amount_fen for c in self.take)

    def figures(self) -> dict:
        return {"lines": len(self.take), "total_fen": self.total_fen,
                "balance_fen": self.balance_fen, "pending_fen": self.pending_fen,
                "available_fen": self.available_fen,
                "waiting_balance": len(self.waiting_balance),
                "waiting_balance_fen": sum(c.amount_fen for c in self.waiting_balance),
                "waiting_card": len(self.waiting_card),
                "waiting_card_fen": sum(c.amount_fen for c in self.waiting_card),
                "held": len(self.held)}


def pending_fen(session: Session, pool_id: int) -> int:
    return int(session.scalar(
        select(func.coalesce(func.sum(PayoutLine.amount_fen), 0))
        .join(PayoutBatch, PayoutBatch.id == PayoutLine.batch_id)
        .where(PayoutBatch.pool_id == pool_id, PayoutLine.status == L.pending)) or 0)


def held_claim_ids(session: Session, pool_id: int, today: date) -> set[int]:
    """Approved claims the run leaves out (core.objections): an open objection, or a scheme
    with an objection window whose window has not passed. Where no scheme year of the pool has
    a window only open objections count, asked without loading every claim."""
    years = scheme_years.of_pool(session, pool_id)
    if any(y.scheme.disclosure.objection_days > 0 for y in years):
        from core.objections import held_claim_ids as with_windows

        return with_windows(session, pool_id, today)
    return set(session.scalars(
        select(Objection.claim_id).join(Claim, Claim.id == Objection.claim_id)
        .join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Objection.status == "open",
               Claim.status == S.approved)))


def plan(session: Session, pool_id: int, today: date) -> Plan:
    """Every `approved` claim of the pool, oldest first: those with an active card go to the
    batch while the balance covers them; from the first one it does not cover, the rest wait.
    Claims held by an objection wait too (core.objections)."""
    q = (select(Claim.id, Claim.number, Claim.household_id, Household.number,
                Household.village_id, Claim.amount_fen, BankCard.id, BankCard.bank_name,
                Member.name, BankCard.number_enc, BankCard.number_masked)
         .join(Household, Household.id == Claim.household_id)
         .outerjoin(BankCard, and_(BankCard.household_id == Claim.household_id,
                                   BankCard.active.is_(True)))
         .outerjoin(Member, Member.id == BankCard.holder_member_id)
         .where(Household.pool_id == pool_id, Claim.status == S.approved)
         .order_by(func.coalesce(Claim.submitted_at, Claim.created_at), Claim.id))
    rows = [Candidate(*r) for r in session.execute(q)]
    held_ids = held_claim_ids(session, pool_id, today)
    p = Plan(pool_id, ledger.balance(session, pool_id), pending_fen(session, pool_id))
    room = p.available_fen
    blocked = False
    for c in rows:
        if not c.amount_fen or c.amount_fen <= 0:
            log.warning("approved claim %s has no amount; left out of the payout", c.claim_number)
            continue
        if c.claim_id in held_ids:
            p.held.append(c)
        elif c.card_id is None:
            p.waiting_card.append(c)
        elif blocked or c.amount_fen > room:
            blocked = True
            p.waiting_balance.append(c)
        else:
            room -= c.amount_fen
            p.take.append(c)
    return p
