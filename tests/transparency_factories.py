"""Test data for the transparency tests, made through the models and the ledger (the payment,
review and payout areas' own services are not under test here): contributions, approved and
paid claims, confirmed payout batches."""
from __future__ import annotations

import itertools
from datetime import date, datetime, timezone

from sqlalchemy import select

from core import ledger
from core.models import (BatchStatus, Claim, ClaimStatus, Household, PayoutBatch, PayoutLine,
                         PayoutLineStatus, SchemeYear)
from core.scheme import scheme_year_on
from tests.factories import local_today

_claims = itertools.count(1)


def claim_number() -> str:
    return f"C{20260000 + next(_claims):08d}"


def contribute(session, household: Household, personal_fen: int, collective_fen: int,
               booked_on: date, ref: str | None = None) -> None:
    """A household's paid order as the payments area books it."""
    ledger.post(session, household.pool_id, "contribution", ref or f"test-pay-{household.number}",
                {"fund:cash": personal_fen, "receivable:collective": collective_fen,
                 "income:personal": -personal_fen, "income:collective": -collective_fen},
                booked_on)


def make_claim(session, household: Household, amount_fen: int, drg: str = "FC19",
               status: ClaimStatus = ClaimStatus.approved, member: int = 0,
               out_of_pocket_fen: int | None = None, today: date | None = None) -> Claim:
    year = scheme_year_on(session, household.pool_id, today or local_today())
    claim = Claim(number=claim_number(), household_id=household.id,
                  member_id=household.members[member].id,
                  scheme_year_id=year.id if year else None, status=status, drg_code=drg,
                  amount_fen=amount_fen, out_of_pocket_fen=out_of_pocket_fen,
                  submitted_at=datetime.now(timezone.utc))
    session.add(claim)
    session.flush()
    return claim


def batch_for(session, pool_id: int, month: str, confirmed_at: datetime | None = None
              ) -> PayoutBatch:
    batch = session.scalar(select(PayoutBatch).where(PayoutBatch.pool_id == pool_id,
                                                     PayoutBatch.month == month))
    if batch is None:
        batch = PayoutBatch(number=f"B{pool_id}{month.replace('-', '')}", pool_id=pool_id,
                            month=month, status=BatchStatus.confirmed,
                            confirmed_at=confirmed_at or datetime.now(timezone.utc))
        session.add(batch)
        session.flush()
    return batch


def pay_claim(session, claim: Claim, month: str, confirmed_at: datetime | None = None,
              booked_on: date | None = None) -> PayoutLine:
    """The claim paid in the pool's confirmed batch of `month`, with its ledger entry."""
    household = session.get(Household, claim.household_id)
    batch = batch_for(session, household.pool_id, month, confirmed_at)
    line = PayoutLine(batch_id=batch.id, claim_id=claim.id, amount_fen=claim.amount_fen,
                      card_bank="农业银行", card_holder="测试", card_number_enc="x",
                      card_number_masked="***************1234", status=PayoutLineStatus.paid)
    session.add(line)
    batch.total_fen += claim.amount_fen
    claim.status = ClaimStatus.paid
    session.flush()
    ledger.post(session, household.pool_id, "payout", f"test-payout-{line.id}",
                {"expense:subsidy": claim.amount_fen, "fund:cash": -claim.amount_fen},
                booked_on or local_today())
    return line


def this_month() -> str:
    d = local_today()
    return f"{d.year:04d}-{d.month:02d}"


def set_objection_days(session, pool_id: int, days: int) -> None:
    for year in session.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool_id)):
        rules = dict(year.rules)
        rules["disclosure"] = {**rules["disclosure"], "objection_days": days}
        year.rules = rules
