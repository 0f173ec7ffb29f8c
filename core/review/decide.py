"""Reading a claim and its member's history, and the rule's decision on the facts (no writes)."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import scheme_years
from core.adjudication import ClaimFacts, Decision, History, OtherClaim, Rules, adjudicate
from core.models import (Claim, ClaimStatus as S, Enrolment, EnrolmentStatus, Household, Member,
                         SchemeYear)
from core.households import cover_start, local_tz
from core.outbox import as_utc
from core.review.errors import ReviewError
from core.review.facts import Facts, parse_claim_number, stored_facts


def find_claim(session: Session, number: str, lock: bool = False) -> Claim:
    number = parse_claim_number(number)
    q = select(Claim).where(Claim.number == number)
    if lock:
        q = q.with_for_update()
    claim = session.scalar(q)
    if claim is None:
        raise ReviewError("unknown_claim", number=number)
    return claim




def _paid(session: Session, id_hash: str, year_id: int) -> bool:
    return session.scalar(select(func.count()).select_from(Enrolment).where(
        Enrolment.scheme_year_id == year_id, Enrolment.id_number_hash == id_hash,
        Enrolment.status == EnrolmentStatus.paid)) > 0


def history_of(session: Session, claim: Claim, year: SchemeYear) -> History:
    """The member's enrolment in `year` and the previous scheme year (the person, by ID number,
    whichever household row they were in), and the person's other claims in the same pool."""
    id_hash = claim.member.id_number_hash
    previous = scheme_years.previous(session, year)
    others = session.execute(
        select(Claim.status, Claim.amount_fen, Claim.admission_date, Claim.discharge_date,
               Claim.number)
        .join(Member, Claim.member_id == Member.id)
        .join(Household, Claim.household_id == Household.id)
        .where(Member.id_number_hash == id_hash, Household.pool_id == year.pool_id,
               Claim.id != claim.id)
        .order_by(Claim.id)).all()
    this_year = session.scalar(select(Enrolment).where(
        Enrolment.scheme_year_id == year.id, Enrolment.id_number_hash == id_hash,
        Enrolment.status == EnrolmentStatus.paid).limit(1))
    # earlier participation: paid in the previous scheme year, or declared by a village list
    continued = ((previous is not None and _paid(session, id_hash, previous.id))
                 or bool(this_year is not None and this_year.continued))
    cover_from = (cover_start(this_year, year) if year.scheme.cover.start_from == "payment"
                  else None)
    return History(
        enrolled_paid_this_year=this_year is not None,
        enrolled_paid_previous_year=continued,
        other_claims=tuple(OtherClaim(status.value, amount, admission, discharge, number)
                           for status, amount, admission, discharge, number in others),
        cover_from=cover_from)


def filed_on(claim: Claim) -> date | None:
    """The local day the claim was submitted (claims.file_within_days counts to it)."""
    if claim.submitted_at is None:
        return None
    return as_utc(claim.submitted_at).astimezone(local_tz()).date()


def rules_of(year: SchemeYear) -> Rules:
    return Rules.from_scheme(year.scheme)


def decide(session: Session, claim: Claim, facts: Facts,
           today: date | None = None) -> tuple[Decision, SchemeYear]:
    """The rule's decision for these facts, reading only; raises ReviewError(no_scheme_year)."""
    year = scheme_years.for_decision(session, claim, facts.admission_date, today)
    if year is None:
        raise ReviewError("no_scheme_year")
    decision = adjudicate(
        ClaimFacts(claim.member_id, facts.drg_code, facts.out_of_pocket_fen, facts.admission_date,
                   facts.discharge_date, facts.insurance, claim.exclusion,
                   filed_on(claim)),
        rules_of(year), history_of(session, claim, year))
    return decision, year



def is_computed(claim: Claim) -> bool:
    return claim.status is S.in_review and bool(claim.trace) and stored_facts(claim) is not None


def _lock_person(session: Session, claim: Claim) -> None:
    """Serialise decisions on one person (PostgreSQL row locks; SQLite has one writer anyway),
    so two approvals at once cannot both use the same room under the annual cap."""
    session.execute(select(Member.id).where(
        Member.id_number_hash == claim.member.id_number_hash).with_for_update()).all()
