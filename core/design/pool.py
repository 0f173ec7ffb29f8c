"""What the designer reads of a pool: the running scheme year, its paid members (how many, their
insurance types, how many were members the year before), the approved claims for weights, and
last year's claims to replay (core/design/backtest.py). Reads only."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from core import scheme_years
from core.design.errors import DesignError, design_text
from core.models import (Claim, ClaimStatus, Enrolment, EnrolmentStatus, Household, Member, Pool,
                         SchemeYear)
from core.scheme import Scheme

APPROVED = (ClaimStatus.approved, ClaimStatus.in_payout, ClaimStatus.paid)


@dataclass
class PoolFacts:
    pool: Pool
    year: SchemeYear
    scheme: Scheme
    members: int  # paid members in the year
    mix: dict[str, float]  # insurance type -> share of the paid members
    continuing_share: float  # of paid members, paid in the previous year too


def find_pool(session: Session, code: str) -> Pool:
    pool = session.scalar(select(Pool).where(Pool.code == code))
    if pool is None:
        known = (", ".join(session.scalars(select(Pool.code).order_by(Pool.code)).all())
                 or design_text("pool.find_pool.1"))
        raise DesignError(design_text("pool.find_pool.2", code=code, known=known))
    return pool


def pool_facts(session: Session, pool: Pool, today: date) -> PoolFacts:
    year = scheme_years.for_report(session, pool.id, today)
    if year is None:
        raise DesignError(design_text("pool.pool_facts.1", code=pool.code))
    paid = (Enrolment.scheme_year_id == year.id, Enrolment.status == EnrolmentStatus.paid)
    mix = {insurance.value: n for insurance, n in session.execute(
        select(Member.insurance, func.count())
        .join(Enrolment, Enrolment.member_id == Member.id)
        .where(*paid).group_by(Member.insurance))}
    members = sum(mix.values())
    previous = scheme_years.previous(session, year)
    continuing = 0
    if previous is not None and members:
        before = aliased(Enrolment)
        continuing = session.scalar(
            select(func.count()).select_from(Enrolment).where(*paid).where(
                Enrolment.id_number_hash.in_(
                    select(before.id_number_hash).where(
                        before.scheme_year_id == previous.id,
                        before.status == EnrolmentStatus.paid)))) or 0
    return PoolFacts(pool, year, year.scheme, members,
                     {k: v / members for k, v in mix.items()} if members else {},
                     continuing / members if members else 0.0)


def approved_claims(session: Session, pool: Pool) -> tuple[list[tuple[str, int]], float]:
    """The pool's approved claims `(drg_code, out_of_pocket_fen)`, and the member-years of the
    scheme years they could come from (paid enrolments of every year of the pool)."""
    claims = [(code, oop) for code, oop in session.execute(
        select(Claim.drg_code, Claim.out_of_pocket_fen)
        .join(Household, Claim.household_id == Household.id)
        .where(Household.pool_id == pool.id, Claim.status.in_(APPROVED),
               Claim.drg_code.is_not(None), Claim.out_of_pocket_fen.is_not(None)))]
    member_years = session.scalar(
        select(func.count()).select_from(Enrolment)
        .join(SchemeYear, Enrolment.scheme_year_id == SchemeYear.id)
        .where(SchemeYear.pool_id == pool.id, Enrolment.status == EnrolmentStatus.paid)) or 0
    return claims, float(member_years)
